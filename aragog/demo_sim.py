"""``python -m aragog.demo --sim``: the demo's live view on the simulated 8xH100 fleet.

The same workflow load (Poisson arrivals of real MMLU-Pro / GSM8K / MATH questions) runs
through ``aragog.sim`` once per policy, each at the same offered rate; the simulator drives
the real router and scheduler. Engines are simulated (Vidur-calibrated step times); answers,
and so accuracy, are the models' real recorded ones. The view is paced to ``--speed``
simulated seconds per wall second, and the summary sets the policies side by side:
throughput, latency, accuracy against all-largest on the same questions, and cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from aragog.api.status import StageView, StatusView, engine_view, round_view
from aragog.config import SchedulerConfig
from aragog.dashboard import render
from aragog.router.builders import default_data_dir
from aragog.router.rules import outcome_for
from aragog.sim.data import load_workflow
from aragog.sim.driver import RequestResult, SimSetup, Simulation
from aragog.sim.experiments import Fleet, WorkflowData, build_fleet, policy_config
from aragog.sim.fleet import engine_ids, make_engines, profiles
from aragog.sim.workload import Arrival, arrivals, poisson_times

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = ("voting-mmlu", "cascade-gsm8k", "cascade-math")
# Aragog and the two ends of the static choice: the accuracy reference (every stage on its
# largest model) and the router's calibrated per-workflow configuration.
SIM_POLICIES = ("aragog", "per-workflow", "largest")


@dataclass(frozen=True)
class Outcome:
    policy: str
    offered: float
    results: list[RequestResult]
    largest_accuracy: float
    stopped_early: bool

    @property
    def finished(self) -> list[RequestResult]:
        return [r for r in self.results if r.finish is not None]

    def row(self) -> list[str]:
        done = self.finished
        lat = sorted(r.latency for r in done)
        acc = statistics.fmean(r.correct for r in self.results) if self.results else 0.0
        return [
            self.policy,
            f"{len(done)}/{len(self.results)}" + (" (overloaded)" if self.stopped_early else ""),
            f"{statistics.median(lat):.1f}" if lat else "-",
            f"{lat[round(0.95 * (len(lat) - 1))]:.1f}" if lat else "-",
            f"{lat[round(0.99 * (len(lat) - 1))]:.1f}" if lat else "-",
            f"{acc:.1%}",
            f"{(acc - self.largest_accuracy) * 100:+.1f}",
            f"{statistics.fmean(r.cost for r in done):.0f}" if done else "-",
        ]


def view(sim: Simulation, wd: WorkflowData, policy: str) -> StatusView:
    """The simulated gateway as a StatusView, so the live demo's renderer draws it."""
    ours = sim.scheduler.ours()
    engines = [engine_view(st, ours.get(eid, 0)) for eid, st in sim.snapshot().engines.items()]
    done = [r for r in sim.results if r.finish is not None]
    stages: list[StageView] = []
    for i, stage in enumerate(wd.spec.stages):
        mix: dict[str, int] = {}
        for r in done:
            if r.config:
                mix[r.config[i]] = mix.get(r.config[i], 0) + 1
        stages.append({"name": stage.name, "models": list(stage.models), "mix": mix})
    lat = sorted(r.latency for r in done)
    return {
        "time": sim.now,
        "ready": True,
        "problems": [],
        "snapshot_age_s": max(0.0, sim.now - sim.snapshot().taken_at),
        "engines": engines,
        "scheduler": {
            "queued": len(sim.scheduler),
            "rounds": 0,
            "last_round": round_view(sim.scheduler.last_plan),
            "skipped": 0,
            "rejected": 0,
        },
        "workflows": [
            {
                "name": wd.spec.name,
                "policy": policy,
                "stages": stages,
                "calls": sum(r.calls for r in done),
                "errors": 0,
                # Whole requests here (the simulator times requests, not single calls).
                "latency_p50_s": lat[len(lat) // 2] if lat else None,
                "latency_p95_s": lat[round(0.95 * (len(lat) - 1))] if lat else None,
                "wait_mean_s": None,
                "router_fallbacks": 0,
            }
        ],
    }


def run_policy(
    wd: WorkflowData,
    fleet: Fleet,
    policy: str,
    arr: Sequence[Arrival],
    args: argparse.Namespace,
    live: Live,
) -> Outcome:
    setup = SimSetup(
        spec=wd.spec,
        rule=wd.rule,
        cost=wd.cost,
        policy=policy_config(wd, policy, 4),
        sched=SchedulerConfig(max_queue=10**6),
        profiles=profiles(fleet.layout, fleet.cals),
        engine_models=engine_ids(fleet.layout),
    )
    sim = Simulation(setup, make_engines(fleet.layout, fleet.models), arr)
    started, last_draw = time.perf_counter(), 0.0
    c_max = wd.spec.largest(wd.cost)
    big = statistics.fmean(
        outcome_for(wd.rule, wd.spec, c_max, a.question.answers, a.question.correct).correct
        for a in arr
    )

    def progress(now: float) -> None:
        nonlocal last_draw
        # Pace simulated time against the wall clock so the view can be watched.
        ahead = now / args.speed - (time.perf_counter() - started)
        if ahead > 0:
            time.sleep(ahead)
        if time.perf_counter() - last_draw >= 0.2:
            last_draw = time.perf_counter()
            done = [r for r in sim.results if r.finish is not None]
            acc = statistics.fmean(r.correct for r in done) if done else 0.0
            footer = (
                f"simulated t={now:.0f}s of {arr[-1].at:.0f}s, {len(done)} requests done, "
                f"accuracy so far {acc:.1%} (all-largest on these questions {big:.1%}); "
                "engines simulated, answers real"
            )
            live.update(render(view(sim, wd, policy), _title(wd, fleet, policy, args), footer))

    asyncio.run(sim.run(progress))
    live.update(render(view(sim, wd, policy), _title(wd, fleet, policy, args), "done"))
    return Outcome(policy, args.rate, sim.results, big, sim.stats.stopped_early)


def _title(wd: WorkflowData, fleet: Fleet, policy: str, args: argparse.Namespace) -> str:
    gpus = sum(p.tp * p.replicas for p in fleet.layout)
    return (
        f"Aragog demo: simulated {gpus}xH100 fleet, {wd.spec.name}, policy {policy}, "
        f"{args.rate:g} requests/s offered"
    )


def summary(outcomes: Sequence[Outcome], wd: WorkflowData) -> Table:
    t = Table(title=f"{wd.spec.name}: the same arrivals under each policy", title_justify="left")
    for col in (
        "policy",
        "finished",
        "p50 s",
        "p95 s",
        "p99 s",
        "accuracy",
        "vs all-largest (pts)",
        "mean cost (B params)",
    ):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for o in outcomes:
        t.add_row(*o.row())
    return t


def run(args: argparse.Namespace, console: Console) -> int:
    data = default_data_dir()
    if not (data / "mmlu_pro").is_dir():
        console.print(f"[red]no recorded answers at {data}: the simulated demo needs them")
        return 2
    console.print(f"loading {args.workflow}: recorded answers, router C(r) per question ...")
    wd = load_workflow(args.workflow, REPO, data, REPO / "benchmarks" / "router" / "out")
    profile_dir = data / "vidur" / "profiling"
    fleet = build_fleet(wd.layout, wd, profile_dir)
    rng = np.random.default_rng(args.seed)
    arr = arrivals(wd.questions, poisson_times(args.rate, args.requests / args.rate, rng), rng)
    outcomes = []
    with Live(console=console, refresh_per_second=4) as live:
        for policy in SIM_POLICIES:
            outcomes.append(run_policy(wd, fleet, policy, arr, args, live))
    console.print(summary(outcomes, wd))
    console.print(
        "Engines are simulated from Vidur's measured H100 kernels; every answer, and so the "
        "accuracy, is the model's real recorded one. Full sweeps: benchmarks/sim/RESULTS.md."
    )
    return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("--sim")
    g.add_argument("--workflow", choices=WORKFLOWS, default="voting-mmlu")
    g.add_argument("--rate", type=float, default=3.0, help="offered requests/s (simulated)")
    g.add_argument("--speed", type=float, default=20.0, help="simulated seconds per second")
    g.add_argument("--seed", type=int, default=0)
