"""The paper's experiment in simulation: every policy on every real-data workflow over the
8-H100 fleet, driving the real router and scheduler. Writes out/*.csv, out/*.png and
RESULTS-sim.md next to this file (``make bench-sim``; ~10-20 min on 2 cores).

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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from aragog.router.builders import default_data_dir
from aragog.router.progress import Progress
from aragog.sim.data import four_gpu_layout, load_workflow
from aragog.sim.experiments import (
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
from aragog.sim.report import write_results
from aragog.sim.workload import read_trace

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "out"
WORKFLOWS = ("voting-mmlu", "cascade-gsm8k", "cascade-math")
DATA = default_data_dir()
VIDUR = DATA / "vidur" / "profiling"

_cache: dict[str, tuple[WorkflowData, Fleet, Fleet]] = {}


def _setup(wf: str, seed: int) -> tuple[WorkflowData, Fleet, Fleet]:
    """Per worker process: the workflow, Aragog's fleet and the baselines' fleet."""
    if wf not in _cache:
        wd = load_workflow(wf, ROOT, DATA, ROOT / "benchmarks" / "router" / "out", seed)
        _cache[wf] = (
            wd,
            build_fleet(wd.layout, wd, VIDUR),
            build_fleet(wd.baseline_layout, wd, VIDUR),
        )
    return _cache[wf]


def _fleet_for(wf: str, policy: str, seed: int, gpus4: bool) -> tuple[WorkflowData, Fleet]:
    wd, ours, base = _setup(wf, seed)
    if gpus4:
        return wd, build_fleet(four_gpu_layout(wf), wd, VIDUR)
    return wd, (ours if policy in ("aragog", "greedy") else base)


def task_slo(wf: str, seed: int) -> tuple[str, float]:
    wd, ours, _ = _setup(wf, seed)
    return wf, SLO_FACTOR * unloaded_latency(wd, ours, seed)


def task_max(
    wf: str, policy: str, slo: float, n: int, seed: int, width: int, gpus4: bool, trace: bool
) -> tuple[float, list[Point]]:
    wd, fleet = _fleet_for(wf, policy, seed, gpus4)
    tr = (
        read_trace(DATA / "vidur" / "processed_traces" / "splitwise_conv.csv.gz") if trace else None
    )
    return max_sustainable(wd, fleet, policy, slo, 1.0, n, seed, width, trace=tr)


def task_point(wf: str, policy: str, rate: float, n: int, seed: int, slo: float) -> Point:
    wd, fleet = _fleet_for(wf, policy, seed, False)
    p, _ = run_point(wd, fleet, policy, rate, n, seed, min_duration=8 * slo)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer requests, no ablations")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    n = 150 if args.quick else 400
    started = time.perf_counter()
    checks = public_checks(VIDUR)
    with ProcessPoolExecutor(args.jobs) as pool:
        slos = dict(pool.map(task_slo, WORKFLOWS, [args.seed] * len(WORKFLOWS)))
        jobs = {
            (wf, pol, 4, False, False): pool.submit(
                task_max, wf, pol, slos[wf], n, args.seed, 4, False, False
            )
            for wf in WORKFLOWS
            for pol in POLICIES
        }
        if not args.quick:
            for w in (1, 2, 8):
                jobs[("voting-mmlu", "aragog", w, False, False)] = pool.submit(
                    task_max,
                    "voting-mmlu",
                    "aragog",
                    slos["voting-mmlu"],
                    n,
                    args.seed,
                    w,
                    False,
                    False,
                )
            for wf in ("cascade-gsm8k", "cascade-math"):
                for pol in ("aragog", "per-input", "per-workflow", "largest"):
                    jobs[(wf, pol, 4, True, False)] = pool.submit(
                        task_max, wf, pol, slos[wf], n, args.seed, 4, True, False
                    )
            for pol in ("aragog", "per-input", "largest"):
                jobs[("voting-mmlu", pol, 4, False, True)] = pool.submit(
                    task_max, "voting-mmlu", pol, slos["voting-mmlu"], n, args.seed, 4, False, True
                )
        bar = Progress("max sustainable rate", len(jobs))
        maxes: dict[tuple[str, str, int, bool, bool], float] = {}
        sweep: list[Point] = []
        for key, fut in jobs.items():
            rate, pts = fut.result()
            maxes[key] = rate
            if key[2:] == (4, False, False):
                sweep += pts
            bar.update(1, f"{key[0]} {key[1]}")
        # Latency at the highest rate every policy sustains, per workflow.
        common = {wf: min(maxes[(wf, p, 4, False, False)] for p in POLICIES) for wf in WORKFLOWS}
        peak_jobs = {
            (wf, pol): pool.submit(task_point, wf, pol, common[wf], n, args.seed, slos[wf])
            for wf in WORKFLOWS
            for pol in POLICIES
        }
        bar = Progress("latency at common peak", len(peak_jobs))
        peak: dict[tuple[str, str], Point] = {}
        for k, fut2 in peak_jobs.items():
            peak[k] = fut2.result()
            bar.update(1)
    write_csv(OUT / "sweep.csv", sweep)
    write_csv(OUT / "peak.csv", list(peak.values()))
    with (OUT / "max_throughput.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workflow", "policy", "beam_width", "gpus4", "splitwise_trace", "max_rate"])
        for (wf, pol, width, g4, tr), r in maxes.items():
            w.writerow([wf, pol, width, g4, tr, f"{r:.4f}"])
    plot(sweep, slos, OUT / "throughput_latency.png")
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
        wall_s=time.perf_counter() - started,
    )
    print(
        f"done in {time.perf_counter() - started:.0f} s; see benchmarks/sim/RESULTS.md",
        file=sys.stderr,
    )


def write_csv(path: Path, points: Sequence[Point]) -> None:
    if not points:
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(points[0])))
        w.writeheader()
        for p in sorted(points, key=lambda p: (p.workflow, p.policy, p.rate)):
            w.writerow(asdict(p))


def plot(points: Sequence[Point], slos: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WORKFLOWS), figsize=(5 * len(WORKFLOWS), 4))
    for ax, wf in zip(axes, WORKFLOWS, strict=True):
        for pol in POLICIES:
            pts = sorted(
                (p for p in points if p.workflow == wf and p.policy == pol), key=lambda p: p.rate
            )
            pts = [p for p in pts if p.finished == p.n and not p.stopped_early]
            if pts:
                ax.plot([p.throughput for p in pts], [p.p50 for p in pts], marker="o", label=pol)
        ax.axhline(slos[wf] / 5, color="grey", lw=0.5)
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
