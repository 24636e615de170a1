"""Time of one scheduling round (the pure ``plan_round``) against queue length and beam
width, side by side in one run. Not a timed test: prints a table.

Scenario (synthetic): a 5-stage voting workflow over 3 models (243 configurations), C(r)
a random 28% of them closed upward (the share the router keeps, see DESIGN.md), requests
of 1-5 queued calls, 3 models x 2 replicas. Two fleets:
- contended: free slots = a quarter of the queue (a queue exists because the fleet is full);
- ample: every call fits (no early exit: the worst case for the beam).

    .venv/bin/python benchmarks/scheduler/bench_round.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from aragog.scheduler.curves import default_curve
from aragog.scheduler.round import EngineSlots, QueuedCall, plan_round
from aragog.scheduler.tables import WorkflowTable
from aragog.workflow.spec import WorkflowSpec

MODELS = {"small": 1.0, "medium": 4.0, "large": 16.0}
SPEC = WorkflowSpec.model_validate(
    {
        "name": "voting",
        "stages": [{"name": f"v{i}", "models": list(MODELS)} for i in range(4)]
        + [{"name": "agg", "models": list(MODELS)}],
        "edges": [[f"v{i}", "agg"] for i in range(4)],
    }
)


def viable_set(table: WorkflowTable, rng: random.Random) -> int:
    rank = {m: i for i, m in enumerate(MODELS)}
    seeds = [c for c in table.configs if rng.random() < 0.05] or [table.configs[-1]]
    mask = 0
    for i, c in enumerate(table.configs):  # upward closure of the seeds
        if any(all(rank[a] >= rank[b] for a, b in zip(c, s, strict=True)) for s in seeds):
            mask |= 1 << i
    return mask


def queue(table: WorkflowTable, n: int, width: int, rng: random.Random) -> list[QueuedCall]:
    calls: list[QueuedCall] = []
    r = 0
    while len(calls) < n:
        mask = viable_set(table, rng)
        stages = rng.sample(range(5), rng.randint(1, 5))
        for s in stages[: n - len(calls)]:
            calls.append(QueuedCall(len(calls), f"r{r}", float(r), table, s, mask, width))
        r += 1
    return calls


def fleet(free_total: int, rng: random.Random) -> list[EngineSlots]:
    engines = []
    per = max(1, free_total // 6)
    for m, cost in MODELS.items():
        curve = default_curve(per * 2, cost).marginal(per * 2)
        for k in range(2):
            used = rng.randint(0, per)
            engines.append(EngineSlots(f"{m}-{k}", m, curve[used : used + per]))
    return engines


def bench(n: int, width: int, ample: bool, repeat: int) -> tuple[float, float]:
    """Median ms per round with the lookahead and without it, alternated so drift cancels."""
    rng = random.Random(n * 31 + width)
    table = WorkflowTable(SPEC)
    calls = queue(table, n, width, rng)
    engines = fleet(n * 2 if ample else max(6, n // 4), rng)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeat):
        for lookahead in (True, False):
            t0 = time.perf_counter()
            plan_round(calls, engines, lookahead)
            times[lookahead].append(time.perf_counter() - t0)
    return statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    for ample in (False, True):
        print(
            f"\n{'ample (every call fits)' if ample else 'contended (free = queue/4)'}:"
            " median ms per round (lookahead on; w=4 also without it)"
        )
        print(f"{'queued':>8} {'w=1':>8} {'w=4':>8} {'w=8':>8} {'w4/w1':>7} {'w=4 off':>8}")
        for n in (16, 64, 256, 1024):
            (w1, _), (w4, w4_off), (w8, _) = (bench(n, w, ample, args.repeat) for w in (1, 4, 8))
            print(f"{n:>8} {w1:>8.3f} {w4:>8.3f} {w8:>8.3f} {w4 / w1:>7.2f} {w4_off:>8.3f}")


if __name__ == "__main__":
    main()
