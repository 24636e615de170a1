"""Throughput-load curves: how many calls per second an engine completes at a given number
of concurrent calls, and the saturation point where that stops growing.

The scheduler ranks choices by the throughput one more call adds to an engine (the curve's
marginal gain at its current load), so curves of different models must share a unit.
Calibrated curves are in calls/s at the calibration's ``max_tokens``; the default curve,
when a model has none, is linear up to saturation then flat, at 1/cost calls/s per slot,
which keeps the fleet's cost ordering but is in relative units: calibrate all models or none.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class ThroughputCurve:
    """Piecewise linear through (0, 0) and ``points`` (increasing load), flat after the last."""

    loads: tuple[float, ...]
    rates: tuple[float, ...]

    @classmethod
    def of(cls, points: Sequence[tuple[float, float]]) -> ThroughputCurve:
        pts = sorted((float(x), float(y)) for x, y in points if x > 0)
        if not pts:
            raise ValueError("a throughput curve needs a point at positive load")
        return cls((0.0, *(x for x, _ in pts)), (0.0, *(y for _, y in pts)))

    def at(self, load: float) -> float:
        if load >= self.loads[-1]:
            return self.rates[-1]
        if load <= 0:
            return 0.0
        i = bisect.bisect_right(self.loads, load)
        x0, x1, y0, y1 = self.loads[i - 1], self.loads[i], self.rates[i - 1], self.rates[i]
        return y0 + (y1 - y0) * (load - x0) / (x1 - x0)

    def marginal(self, upto: int) -> tuple[float, ...]:
        """gains[k] = throughput added by going from k to k + 1 concurrent calls."""
        return tuple(self.at(k + 1) - self.at(k) for k in range(upto))


def default_curve(saturation: int, cost: float) -> ThroughputCurve:
    return ThroughputCurve.of([(float(saturation), saturation / cost)])


def knee(points: Sequence[tuple[float, float]], tolerance: float = 0.05) -> int:
    """Saturation: the least measured concurrency whose throughput is within ``tolerance``
    of the best measured. Beyond it more concurrency buys latency, not throughput."""
    if not points:
        raise ValueError("no points")
    best = max(y for _, y in points)
    return int(min(x for x, y in points if y >= (1 - tolerance) * best))


@dataclass(frozen=True, slots=True)
class Calibration:
    """What ``aragog calibrate`` measured against one engine (and writes to a file)."""

    model: str
    saturation: int
    points: tuple[tuple[float, float], ...]
    unit: str = "calls/s"
    max_tokens: int | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "url": self.url,
            "unit": self.unit,
            "max_tokens": self.max_tokens,
            "saturation": self.saturation,
            "points": [list(p) for p in self.points],
        }

    def curve(self) -> ThroughputCurve:
        return ThroughputCurve.of(self.points)


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file (JSON or YAML; YAML is a superset, so one parser reads both)."""
    p = Path(path)
    data = yaml.safe_load(p.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise ValueError(f"{p}: not a calibration file (no 'points' list)")
    points = tuple((float(x), float(y)) for x, y in data["points"])
    sat = data.get("saturation")
    return Calibration(
        model=str(data.get("model", "")),
        saturation=int(sat) if sat is not None else knee(points),
        points=points,
        unit=str(data.get("unit", "calls/s")),
        max_tokens=data.get("max_tokens"),
        url=data.get("url"),
    )


def save_calibration(cal: Calibration, path: str | Path) -> None:
    p = Path(path)
    if p.suffix in (".yaml", ".yml"):
        p.write_text(yaml.safe_dump(cal.to_dict(), sort_keys=False))
    else:
        p.write_text(json.dumps(cal.to_dict(), indent=2) + "\n")
