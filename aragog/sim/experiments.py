"""One simulated run per (workflow, policy, rate), and the searches built on them: the
unloaded latency that sets the SLO, the rate sweep and the maximum sustainable rate.

Everything is a pure function of its arguments and a seed: the same seed gives the same
arrivals, the same questions and so the same numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from aragog.config import SchedulerConfig, WorkflowPolicyConfig
from aragog.router.rules import Rule
from aragog.scheduler.curves import Calibration
from aragog.sim.driver import RequestResult, SimSetup, Simulation
from aragog.sim.engine import EngineParams
from aragog.sim.fleet import Placement, calibrate, engine_ids, make_engines, profiles, step_models
from aragog.sim.perf import StepModel
from aragog.sim.workload import (
    Arrival,
    Question,
    arrivals,
    poisson_times,
    stage_prompt,
    trace_times,
)
from aragog.workflow.spec import WorkflowSpec

POLICIES = ("aragog", "greedy", "per-input", "per-input-load", "per-workflow", "largest")
SLO_FACTOR = 5.0  # p95 latency must stay within 5x the unloaded all-largest p95
MIN_SLOS = 4  # a run's arrivals last at least this many SLOs (at most max_requests)
UNFINISHED = 1e9  # latency recorded for a request the run stopped before finishing


@dataclass(frozen=True)
class WorkflowData:
    spec: WorkflowSpec
    rule: Rule
    cost: Mapping[str, float]
    questions: Sequence[Question]
    static: Mapping[str, str]  # the per-workflow baseline's configuration
    layout: Sequence[Placement]  # every policy's fleet: 8 serving GPUs
    router_gpu_layout: Sequence[Placement]  # 7 serving GPUs, the 8th kept for a GPU router


@dataclass(frozen=True)
class Fleet:
    """Step models and calibrated profiles, built once per layout."""

    layout: tuple[Placement, ...]
    models: Mapping[str, StepModel]
    cals: Mapping[str, Calibration]


@dataclass(frozen=True, slots=True)
class Point:
    workflow: str
    policy: str
    rate: float  # offered, requests/s
    n: int
    finished: int
    throughput: float  # finished requests / s of simulated time
    p25: float
    p50: float
    p95: float
    accuracy: float  # over all requests (unfinished count as wrong)
    largest_accuracy: float  # c_max on the same requests, from the records
    mean_cost: float
    preemptions: int
    stopped_early: bool
    wall_s: float

    def sustained(self, slo: float) -> bool:
        return not self.stopped_early and self.finished == self.n and self.p95 <= slo


def build_fleet(layout: Sequence[Placement], wd: WorkflowData, profile_dir: Path) -> Fleet:
    """Calibrate each model at this workflow's typical call: mean prompt and the model's
    mean recorded output on the requests' questions."""
    models = step_models(layout, profile_dir)
    qs = wd.questions
    prompt = int(np.mean([stage_prompt("", q, []) for q in qs]))
    cals = {
        m: calibrate(sm, prompt, max(1, int(np.mean([q.out_tokens[m] for q in qs]))))
        for m, sm in models.items()
    }
    return Fleet(tuple(layout), models, cals)


def policy_config(wd: WorkflowData, policy: str, width: int) -> WorkflowPolicyConfig:
    if policy == "per-workflow":
        return WorkflowPolicyConfig(policy="per-workflow", configuration=dict(wd.static))
    return WorkflowPolicyConfig.model_validate({"policy": policy, "beam_width": width})


def run_point(
    wd: WorkflowData,
    fleet: Fleet,
    policy: str,
    rate: float,
    n: int,
    seed: int,
    width: int = 4,
    trace: Sequence[float] | None = None,
    params: EngineParams | None = None,
    min_duration: float = 0.0,
    slo: float | None = None,
    max_requests: int = 4000,
    lookahead: bool = True,
) -> tuple[Point, list[RequestResult]]:
    """At least ``n`` requests and at least ``min_duration`` seconds of arrivals: a
    steady state must last long enough against the SLO for overload to show as a growing
    queue rather than a burst the engines absorb."""
    rng = np.random.default_rng(seed)
    horizon = min(max(n / rate, min_duration), max(n, max_requests) / rate)
    times = trace_times(trace, rate, horizon, rng) if trace else poisson_times(rate, horizon, rng)
    arr = arrivals(wd.questions, times, rng)
    setup = SimSetup(
        spec=wd.spec,
        rule=wd.rule,
        cost=wd.cost,
        policy=policy_config(wd, policy, width),
        sched=SchedulerConfig(max_queue=10**6, lookahead=lookahead),
        profiles=profiles(fleet.layout, fleet.cals),
        engine_models=engine_ids(fleet.layout),
        slo_s=slo,
    )
    sim = Simulation(setup, make_engines(fleet.layout, fleet.models, params), arr)
    started = time.perf_counter()
    results = asyncio.run(sim.run())
    wall = time.perf_counter() - started
    return summarize(
        wd, policy, rate, arr, results, sim.stats.preemptions, sim.stats.stopped_early, wall
    ), results


def summarize(
    wd: WorkflowData,
    policy: str,
    rate: float,
    arr: Sequence[Arrival],
    results: Sequence[RequestResult],
    preemptions: int,
    stopped: bool,
    wall: float,
) -> Point:
    lat = np.array([min(r.latency, UNFINISHED) for r in results])
    done = [r for r in results if r.finish is not None]
    end = max((r.finish for r in done if r.finish is not None), default=0.0)
    first = min((r.arrival for r in results), default=0.0)
    by_id = {a.request_id: a for a in arr}
    c_max = wd.spec.largest(wd.cost)
    big = [_largest_correct(wd, by_id[r.request_id].question, c_max) for r in results]
    return Point(
        workflow=wd.spec.name,
        policy=policy,
        rate=rate,
        n=len(results),
        finished=len(done),
        throughput=len(done) / max(1e-9, end - first),
        p25=float(np.percentile(lat, 25)),
        p50=float(np.percentile(lat, 50)),
        p95=float(np.percentile(lat, 95)),
        accuracy=float(np.mean([r.correct for r in results])),
        largest_accuracy=float(np.mean(big)),
        mean_cost=float(np.mean([r.cost for r in done])) if done else 0.0,
        preemptions=preemptions,
        stopped_early=stopped,
        wall_s=wall,
    )


def _largest_correct(wd: WorkflowData, q: Question, c_max: tuple[str, ...]) -> bool:
    from aragog.router.rules import outcome_for

    return outcome_for(wd.rule, wd.spec, c_max, q.answers, q.correct).correct


def unloaded_latency(wd: WorkflowData, fleet: Fleet, seed: int, n: int = 100) -> float:
    """p95 latency of all-largest with (almost) one request in the system at a time. The
    p95, not the median: recorded outputs are heavy-tailed (a chain of thought that runs to
    max_tokens), so an SLO on the p95 must be set against the unloaded p95."""
    point, _ = run_point(wd, fleet, "largest", rate=0.01, n=n, seed=seed)
    return point.p95


def max_sustainable(
    wd: WorkflowData,
    fleet: Fleet,
    policy: str,
    slo: float,
    start: float,
    n: int,
    seed: int,
    width: int = 4,
    refine: int = 3,
    trace: Sequence[float] | None = None,
    lookahead: bool = True,
) -> tuple[float, list[Point]]:
    """Highest offered rate whose run meets the SLO: double from ``start`` until a run
    fails, then bisect ``refine`` times. Returns the rate and every point run."""
    points: list[Point] = []

    def ok(rate: float) -> bool:
        p, _ = run_point(
            wd,
            fleet,
            policy,
            rate,
            n,
            seed,
            width,
            trace,
            min_duration=MIN_SLOS * slo,
            slo=slo,
            lookahead=lookahead,
        )
        points.append(p)
        return p.sustained(slo)

    lo, hi = 0.0, start
    while ok(hi):
        lo, hi = hi, hi * 2
        if hi > 1e4:
            break
    if lo == 0.0:  # even the start fails: halve down
        while hi > 1e-3 and not ok(hi / 2):
            hi /= 2
        lo, hi = hi / 2, hi
    for _ in range(refine):
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, points


def with_width(wd: WorkflowData, layout: Sequence[Placement]) -> WorkflowData:
    return replace(wd, layout=tuple(layout))
