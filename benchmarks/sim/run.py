"""The paper's experiment in simulation: every policy on every real-data workflow over the
8-H100 fleet, driving the real router and scheduler. Writes out/*.csv, out/*.png and
RESULTS.md next to this file (``make bench-sim``; ~15-20 min on 2 cores).

    .venv/bin/python benchmarks/sim/run.py [--quick] [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

from aragog.router.builders import default_data_dir
from aragog.router.progress import Progress
from aragog.sim.data import four_gpu_layout, load_workflow
from aragog.sim.experiments import (
    MIN_SLOS,
    POLICIES,
    SLO_FACTOR,
    Fleet,
    Point,
    WorkflowData,
    build_fleet,
    max_sustainable,
    run_point,
    unloaded_latency,
)
from aragog.sim.perf import public_checks
from aragog.sim.report import Job, write_results
from aragog.sim.workload import read_trace

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "out"
WORKFLOWS = ("voting-mmlu", "cascade-gsm8k", "cascade-math")
DATA = default_data_dir()
VIDUR = DATA / "vidur" / "profiling"
REFINE = 2

_cache: dict[tuple[str, bool, bool], tuple[WorkflowData, Fleet, Fleet]] = {}


def _setup(
    wf: str, seed: int, oracle: bool, two_models: bool = False
) -> tuple[WorkflowData, Fleet, Fleet]:
    """Per worker process: the workflow, the 8-GPU fleet and the paper's router-GPU one."""
    key = (wf, oracle, two_models)
    if key not in _cache:
        art = ROOT / "benchmarks" / "router" / "out"
        wd = load_workflow(wf, ROOT, DATA, art, seed, oracle=oracle, two_models=two_models)
        fleet = build_fleet(wd.layout, wd, VIDUR)
        # The same models on the same GPUs, one small replica fewer: the same calibrations.
        _cache[key] = (wd, fleet, replace(fleet, layout=tuple(wd.router_gpu_layout)))
    return _cache[key]


def _fleet_for(job: Job, seed: int) -> tuple[WorkflowData, Fleet]:
    wd, fleet, router_gpu = _setup(job.workflow, seed, job.oracle, job.two_models)
    if job.gpus4:
        return wd, build_fleet(four_gpu_layout(job.workflow), wd, VIDUR)
    return wd, (router_gpu if job.router_gpu else fleet)


def task_slo(wf: str, seed: int) -> tuple[str, float]:
    wd, ours, _ = _setup(wf, seed, False)
    return wf, SLO_FACTOR * unloaded_latency(wd, ours, seed)


def task_max(job: Job, slo: float, n: int, seed: int) -> tuple[float, list[Point]]:
    wd, fleet = _fleet_for(job, seed)
    trace = None
    if job.trace:
        trace = read_trace(DATA / "vidur" / "processed_traces" / "splitwise_conv.csv.gz")
    return max_sustainable(
        wd, fleet, job.policy, slo, 1.0, n, seed, job.width, refine=REFINE, trace=trace,
        lookahead=job.lookahead,
    )


def task_seed(job: Job, slo: float, n: int, seed: int) -> tuple[Job, int, float]:
    """Max sustainable rate with the arrivals and request sampling of ``seed``; the router,
    its train/test split and the SLO stay those of seed 0."""
    wd, fleet = _fleet_for(job, 0)
    rate, _ = max_sustainable(wd, fleet, job.policy, slo, 1.0, n, seed, job.width, refine=REFINE)
    return job, seed, rate


def seed_spread(seeds: Sequence[int], jobs: int, n: int) -> None:
    """Aragog against per-input and per-workflow at several arrival seeds: how much of a
    difference in the main table one seed's luck can make. Prints a markdown table."""
    pols = ("aragog", "per-input", "per-workflow")
    with ProcessPoolExecutor(jobs) as pool:
        slos = dict(pool.map(task_slo, WORKFLOWS, [0] * len(WORKFLOWS)))
        futs = [
            pool.submit(task_seed, Job(wf, pol), slos[wf], n, s)
            for s in seeds
            for wf in WORKFLOWS
            for pol in pols
        ]
        bar = Progress("max sustainable rate, by seed", len(futs))
        rates: dict[tuple[str, str, int], float] = {}
        for fut in futs:
            job, s, rate = fut.result()
            rates[(job.workflow, job.policy, s)] = rate
            bar.update(1, f"{job.workflow} {job.policy} seed {s}")
    print(f"\n| workflow | seed | {' | '.join(pols)} | aragog vs per-input | vs per-workflow |")
    print("|---|---:|" + "---:|" * (len(pols) + 2))
    for wf in WORKFLOWS:
        for s in seeds:
            a, pi, pw = (rates[(wf, p, s)] for p in pols)
            print(f"| {wf} | {s} | {a:.2f} | {pi:.2f} | {pw:.2f} | {a / pi - 1:+.0%} | "
                  f"{a / pw - 1:+.0%} |")


def task_point(wf: str, policy: str, rate: float, n: int, seed: int, slo: float) -> Point:
    wd, fleet = _fleet_for(Job(wf, policy), seed)
    p, _ = run_point(wd, fleet, policy, rate, n, seed, min_duration=MIN_SLOS * slo)
    return p


def plan(quick: bool) -> list[Job]:
    jobs = [Job(wf, pol) for wf in WORKFLOWS for pol in POLICIES]
    if quick:
        return jobs
    # Router upper bound: C(r) = the true viable set (held-out labels; an ablation only).
    jobs += [Job(wf, pol, oracle=True) for wf in WORKFLOWS for pol in ("aragog", "per-input")]
    jobs += [Job("voting-mmlu", "aragog", width=w, oracle=True) for w in (1, 2, 8)]
    jobs += [
        Job(wf, pol, gpus4=True)
        for wf in ("cascade-gsm8k", "cascade-math")
        for pol in ("aragog", "per-input")
    ]
    jobs += [Job("voting-mmlu", pol, trace=True) for pol in ("aragog", "per-input")]
    # The constrained configuration space: each stage's cheapest or largest model only.
    jobs += [Job(wf, pol, two_models=True) for wf in WORKFLOWS for pol in ("aragog", "per-input")]
    # The paper's layout: Aragog on 7 serving GPUs, the 8th kept for a GPU-embedding router.
    jobs += [Job(wf, "aragog", router_gpu=True) for wf in WORKFLOWS]
    # The scheduler's lookahead off: the ranking by this round's gain alone.
    jobs += [Job(wf, "aragog", lookahead=False) for wf in WORKFLOWS]
    return jobs


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer requests, no ablations")
    ap.add_argument(
        "--seeds", type=lambda v: [int(x) for x in v.split(",")],
        help="only the max-throughput spread of aragog / per-input / per-workflow over these "
        "arrival seeds, e.g. 1,2,3 (prints a table)",
    )
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    n = 150 if args.quick else 200
    if args.seeds:
        seed_spread(args.seeds, args.jobs, n)
        return
    started = time.perf_counter()
    checks = public_checks(VIDUR)
    with ProcessPoolExecutor(args.jobs) as pool:
        slos = dict(pool.map(task_slo, WORKFLOWS, [args.seed] * len(WORKFLOWS)))
        futures: dict[Job, Future[tuple[float, list[Point]]]] = {
            job: pool.submit(task_max, job, slos[job.workflow], n, args.seed)
            for job in plan(args.quick)
        }
        bar = Progress("max sustainable rate", len(futures))
        maxes: dict[Job, float] = {}
        sweep: list[Point] = []
        for job, fut in futures.items():
            rate, pts = fut.result()
            maxes[job] = rate
            if job == Job(job.workflow, job.policy):
                sweep += pts
            bar.update(1, f"{job.workflow} {job.policy}")
        # Latency at the highest rate every policy sustains, per workflow.
        common = {wf: min(maxes[Job(wf, p)] for p in POLICIES) for wf in WORKFLOWS}
        peak_futs = {
            (wf, pol): pool.submit(task_point, wf, pol, common[wf], n, args.seed, slos[wf])
            for wf in WORKFLOWS
            for pol in POLICIES
        }
        bar = Progress("latency at common peak", len(peak_futs))
        peak: dict[tuple[str, str], Point] = {}
        for k, fut2 in peak_futs.items():
            peak[k] = fut2.result()
            bar.update(1)
    write_csv(OUT / "sweep.csv", sweep)
    write_csv(OUT / "peak.csv", list(peak.values()))
    with (OUT / "max_throughput.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["workflow", "policy", "beam_width", "gpus4", "splitwise_trace", "oracle",
             "lookahead", "two_models", "router_gpu", "max_rate"]
        )  # fmt: skip
        for j, r in maxes.items():
            w.writerow(
                [j.workflow, j.policy, j.width, j.gpus4, j.trace, j.oracle, j.lookahead,
                 j.two_models, j.router_gpu, f"{r:.4f}"]
            )
    plot(sweep, OUT / "throughput_latency.png")
    plot(sweep, ROOT / "benchmarks" / "sim" / "throughput_latency.png")  # beside RESULTS.md
    wall = time.perf_counter() - started
    write_results(
        ROOT / "benchmarks" / "sim" / "RESULTS.md",
        checks,
        slos,
        maxes,
        peak,
        common,
        seed=args.seed,
        quick=args.quick,
        n=n,
        wall_s=wall,
    )
    print(f"done in {wall:.0f} s; see benchmarks/sim/RESULTS.md", file=sys.stderr)


def write_csv(path: Path, points: Sequence[Point]) -> None:
    if not points:
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(points[0])))
        w.writeheader()
        for p in sorted(points, key=lambda p: (p.workflow, p.policy, p.rate)):
            w.writerow(asdict(p))


def plot(points: Sequence[Point], path: Path) -> None:
    """Median latency against achieved throughput for every sustained run, per workflow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WORKFLOWS), figsize=(5 * len(WORKFLOWS), 4))
    for ax, wf in zip(axes, WORKFLOWS, strict=True):
        for pol in POLICIES:
            pts = sorted(
                (p for p in points if p.workflow == wf and p.policy == pol and p.finished == p.n),
                key=lambda p: p.rate,
            )
            if pts:
                ax.plot([p.throughput for p in pts], [p.p50 for p in pts], marker="o", label=pol)
        ax.set_title(f"{wf} (simulated 8xH100)")
        ax.set_xlabel("throughput (requests/s)")
        ax.set_ylabel("median latency (s)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
