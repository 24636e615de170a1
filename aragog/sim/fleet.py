"""The simulated fleet: which model runs where (GPUs, tensor parallelism, replicas), the
engines built from the performance model, and each engine's scheduler profile measured
the way ``aragog calibrate`` measures a live engine (closed loop, doubling concurrency).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aragog.scheduler.capacity import EngineProfile
from aragog.scheduler.curves import Calibration, ThroughputCurve, knee
from aragog.sim.engine import EngineParams, Seq, SimEngine
from aragog.sim.perf import StepModel, build
from aragog.sim.shapes import FLEET


@dataclass(frozen=True, slots=True)
class Placement:
    model: str
    tp: int
    replicas: int = 1


def gpus(layout: Sequence[Placement]) -> int:
    return sum(p.tp * p.replicas for p in layout)


def engine_ids(layout: Sequence[Placement]) -> dict[str, str]:
    """engine id -> model, ``model#i`` per replica."""
    return {f"{p.model}#{i}": p.model for p in layout for i in range(p.replicas)}


def step_models(layout: Sequence[Placement], profile_dir: Path) -> dict[str, StepModel]:
    return {p.model: build(p.model, FLEET[p.model], p.tp, profile_dir) for p in layout}


def make_engines(
    layout: Sequence[Placement],
    models: Mapping[str, StepModel],
    params: EngineParams | None = None,
) -> dict[str, SimEngine]:
    return {eid: SimEngine(eid, models[m], params) for eid, m in engine_ids(layout).items()}


def measure(model: StepModel, concurrency: int, prompt: int, out: int, calls: int) -> float:
    """Calls/s with ``concurrency`` calls always in flight (closed loop), after warm-up."""
    eng = SimEngine("cal", model)
    now = 0.0
    for i in range(concurrency):
        eng.submit(Seq(i, prompt, out), now)
    done = 0
    started = None
    warm = concurrency
    while done < warm + calls:
        t = eng.next_time
        assert t is not None
        now = t
        for _ in eng.finish_step(now):
            done += 1
            if done == warm:
                started = now
            eng.submit(Seq(done, prompt, out), now)
    assert started is not None
    return calls / (now - started)


def calibrate(
    model: StepModel, prompt: int, out: int, max_concurrency: int = 256, tolerance: float = 0.05
) -> Calibration:
    points: list[tuple[float, float]] = []
    c = 1
    while c <= max_concurrency:
        points.append((float(c), measure(model, c, prompt, out, calls=max(64, 2 * c))))
        c *= 2
    return Calibration(model.name, knee(points, tolerance), tuple(points), max_tokens=out)


def profiles(
    layout: Sequence[Placement], cals: Mapping[str, Calibration]
) -> dict[str, EngineProfile]:
    return {
        eid: EngineProfile.of(cals[m].saturation, ThroughputCurve.of(cals[m].points))
        for eid, m in engine_ids(layout).items()
    }
