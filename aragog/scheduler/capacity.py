"""Free slots and marginal gains per engine, from a snapshot and the loads the gateway knows.

Free slots = saturation - load, load = our own outstanding calls there + the load of
everyone else. Our own count is exact and immediate (a burst shows at once, and so does a
completion); everyone else's is what the scrape shows beyond our calls, smoothed, since
vLLM's gauges jitter by a batch between scrapes and lag a poll interval. Smoothing the
whole scrape instead would hold a freed slot hostage for a few polls. An engine whose KV
cache is above the high watermark is full whatever its batch says: more calls would only
be preempted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from aragog.config import GatewayConfig, SchedulerConfig, engine_id
from aragog.fleet.snapshot import FleetSnapshot
from aragog.scheduler.curves import ThroughputCurve, default_curve, load_calibration
from aragog.scheduler.round import EngineSlots


@dataclass(frozen=True, slots=True)
class EngineProfile:
    saturation: int
    curve: ThroughputCurve
    gains: tuple[float, ...]  # curve.marginal(saturation), computed once

    @classmethod
    def of(cls, saturation: int, curve: ThroughputCurve) -> EngineProfile:
        return cls(saturation, curve, curve.marginal(saturation))


def profiles_for(cfg: GatewayConfig) -> dict[str, EngineProfile]:
    """Engine id -> profile. An entry keyed by engine id beats one keyed by its model;
    a curve without a saturation takes the calibrated one, else the default."""
    sched = cfg.scheduler
    out: dict[str, EngineProfile] = {}
    for m in cfg.fleet.models:
        for e in m.engines:
            eid = engine_id(m.name, e)
            cap = sched.capacity.get(eid) or sched.capacity.get(m.name)
            sat: int | None = None
            curve: ThroughputCurve | None = None
            if cap is not None:
                sat = cap.saturation
                if cap.curve is not None:
                    curve = ThroughputCurve.of(cap.curve)
                elif cap.curve_file is not None:
                    cal = load_calibration(cap.curve_file)
                    curve, sat = cal.curve(), sat or cal.saturation
            sat = sat or sched.default_saturation
            out[eid] = EngineProfile.of(sat, curve or default_curve(sat, m.cost))
    return out


def smooth(
    prev: Mapping[str, float], snapshot: FleetSnapshot, ours: Mapping[str, int], alpha: float
) -> dict[str, float]:
    """Exponentially weighted load of other clients per healthy engine: scraped running +
    waiting beyond our own calls. An engine that comes back starts from its scrape."""
    out: dict[str, float] = {}
    for eid, st in snapshot.engines.items():
        if st.healthy:
            now = max(0.0, st.scraped_load - ours.get(eid, 0))
            old = prev.get(eid)
            out[eid] = now if old is None else alpha * now + (1 - alpha) * old
    return out


def engine_slots(
    snapshot: FleetSnapshot,
    others: Mapping[str, float],
    ours: Mapping[str, int],
    profiles: Mapping[str, EngineProfile],
    sched: SchedulerConfig,
) -> tuple[EngineSlots, ...]:
    """Every healthy engine with its free slots' gains (none when full)."""
    out = []
    for eid, st in snapshot.engines.items():
        if not st.healthy:
            continue
        prof = profiles[eid]
        load = others.get(eid, 0.0) + ours.get(eid, 0)
        used = min(prof.saturation, math.floor(load + 0.5))
        full = st.metrics is not None and st.metrics.kv_usage >= sched.kv_high_watermark
        out.append(EngineSlots(eid, st.ref.model, () if full else prof.gains[used:]))
    return tuple(out)
