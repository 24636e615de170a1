"""The scheduling policies side by side on the real local vLLM CPU fleet.

Starts tiny-s, tiny-m and tiny-l once (one engine each, few sequences so that queues form at
low rates on a small machine), then for each policy starts ``aragog serve`` with the
``voting`` workflow on that policy and drives workflow runs (``POST /v1/workflows/voting/
runs``) at a fixed Poisson rate. Every policy sees the same arrival times and inputs. Two
rounds, the second in reverse policy order, so that machine drift cancels. Reports completed
requests/s, p50/p95 end-to-end latency, the model mix per stage (from each run's trace) and
ratios against per-input and per-workflow.

    flock /tmp/aragog-fleet.lock .venv/bin/python benchmarks/live_policies.py

Writes RESULTS.md, results.json and policies.png into ``--out`` (benchmarks/live). The
models are random, so accuracy is not measured: this shows where calls go and what that
does to throughput and latency, as the simulator (benchmarks/sim) predicts for real models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aragog.localfleet import (  # noqa: E402
    MODELS_DIR,
    EngineSpec,
    LocalFleet,
    free_port,
    wait_http,
)

POLICIES = ("aragog", "greedy", "per-input", "per-workflow", "largest")
BASELINES = ("per-input", "per-workflow")
WORKFLOW = "voting"
STAGES = ("voter1", "voter2", "voter3", "voter4", "aggregate")
MODELS = ("tiny-s", "tiny-m", "tiny-l")
# tiny-s gets two sequences so that one request's four parallel voters already queue on it.
MAX_NUM_SEQS = {"tiny-s": 2, "tiny-m": 4, "tiny-l": 4}
# per-workflow needs one static configuration; the cheapest (all tiny-s) is what a
# cost-minded operator would pin without a router.
PER_WORKFLOW = dict.fromkeys(STAGES, "tiny-s")
QUESTION = "Question {i}: which number is a prime? (A) {a} (B) {b} (C) {c} (D) {d}"
REQUEST_TIMEOUT_S = 120.0
PROGRESS_EVERY_S = 10.0
LOAD_EVERY_S = 0.5  # how often the gateway's meta-queue and in-flight gauges are sampled
# Models each policy's calls may use here (C(r) = everything): where a free slot means the
# meta-queue should not be holding calls. largest does not queue in the gateway.
ALLOWED = {
    "aragog": MODELS,
    "greedy": MODELS,
    "per-input": ("tiny-s",),
    "per-workflow": ("tiny-s",),
}

# (calls in the gateway's meta-queue, calls in flight per model) at one instant
LoadPoint = tuple[float, dict[str, float]]


# --- pure helpers (tested in tests/unit/test_live_policies.py) -----------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks as numpy's default; NaN for
    no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Sample:
    """One workflow request: when it was sent (s since its run began) and how it ended."""

    policy: str
    round: int
    sent_s: float
    done_s: float | None  # None: failed or unfinished
    error: str | None = None
    configuration: dict[str, str] = field(default_factory=dict)
    queue_wait_s: float = 0.0  # summed over its stages
    # (model, call latency s, completion tokens) per stage that ran: where the time went
    calls: list[tuple[str, float, int]] = field(default_factory=list)

    @property
    def latency_s(self) -> float | None:
        return None if self.done_s is None else self.done_s - self.sent_s


@dataclass(frozen=True)
class Summary:
    policy: str
    sent: int
    completed: int
    errors: dict[str, int]
    throughput: float  # completed requests / seconds from first send to last completion
    p50_s: float
    p95_s: float
    mean_queue_wait_s: float
    mix: dict[str, dict[str, int]]  # stage -> model -> calls


def span_s(samples: Sequence[Sample]) -> float:
    """Seconds from a run's first send to its last completion (0 if nothing completed)."""
    done = [s.done_s for s in samples if s.done_s is not None]
    return max(done) - min(s.sent_s for s in samples) if done else 0.0


def summarize(policy: str, runs: Sequence[Sequence[Sample]]) -> Summary:
    """One policy over its runs (rounds): throughput pools completions over pooled spans."""
    samples = [s for run in runs for s in run]
    ok = [s for s in samples if s.latency_s is not None]
    latencies = [s.latency_s for s in ok if s.latency_s is not None]
    busy = sum(span_s(run) for run in runs)
    mix: dict[str, Counter[str]] = {}
    for s in ok:
        for stage, model in s.configuration.items():
            mix.setdefault(stage, Counter())[model] += 1
    return Summary(
        policy=policy,
        sent=len(samples),
        completed=len(ok),
        errors=dict(Counter(s.error for s in samples if s.error is not None)),
        throughput=len(ok) / busy if busy > 0 else 0.0,
        p50_s=percentile(latencies, 50),
        p95_s=percentile(latencies, 95),
        mean_queue_wait_s=sum(s.queue_wait_s for s in ok) / len(ok) if ok else float("nan"),
        mix={stage: dict(c) for stage, c in mix.items()},
    )


def model_shares(mix: Mapping[str, Mapping[str, int]], models: Sequence[str]) -> dict[str, float]:
    """Share of all calls each model served, over every stage."""
    totals = Counter[str]()
    for per_model in mix.values():
        totals.update(per_model)
    n = sum(totals.values())
    return {m: totals[m] / n if n else 0.0 for m in models}


def call_stats(samples: Sequence[Sample]) -> dict[str, tuple[int, float, float]]:
    """model -> (calls, mean call latency s, mean completion tokens) over completed requests."""
    per: dict[str, list[tuple[float, int]]] = {}
    for s in samples:
        for model, latency, tokens in s.calls:
            per.setdefault(model, []).append((latency, tokens))
    return {
        m: (len(v), sum(x[0] for x in v) / len(v), sum(x[1] for x in v) / len(v))
        for m, v in sorted(per.items())
    }


def gateway_load(metrics: str) -> LoadPoint:
    """Meta-queue length and in-flight calls per model from the gateway's /metrics page."""
    queue, inflight = 0.0, dict[str, float]()
    for line in metrics.splitlines():
        if line.startswith("aragog_scheduler_queue_length "):
            queue = float(line.rsplit(" ", 1)[1])
        elif line.startswith("aragog_engine_inflight{") and 'model="' in line:
            labels, value = line.rsplit(" ", 1)
            model = labels.split('model="', 1)[1].split('"', 1)[0]
            inflight[model] = inflight.get(model, 0.0) + float(value)
    return queue, inflight


def idle_while_queued(
    points: Sequence[LoadPoint], allowed: Sequence[str], saturation: Mapping[str, int]
) -> tuple[int, float]:
    """(samples with calls queued, share of them where an allowed model had a free slot).
    A high share means the scheduler held calls it could have placed; NaN if none queued."""
    queued = [inflight for q, inflight in points if q > 0]
    idle = sum(1 for f in queued if any(f.get(m, 0.0) < saturation[m] for m in allowed))
    return len(queued), idle / len(queued) if queued else float("nan")


def ratios(
    summaries: Mapping[str, Summary], baselines: Sequence[str]
) -> dict[str, dict[str, tuple[float, float]]]:
    """policy -> baseline -> (throughput ratio, p50 latency ratio); NaN where undefined.
    Throughput above 1 and latency below 1 are better than the baseline."""

    def div(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {
        p: {
            b: (div(s.throughput, summaries[b].throughput), div(s.p50_s, summaries[b].p50_s))
            for b in baselines
            if b in summaries
        }
        for p, s in summaries.items()
    }


def round_orders(policies: Sequence[str], rounds: int) -> list[list[str]]:
    """A B C, C B A, A B C, ...: each policy's mean position is the same, so drift cancels."""
    return [list(policies) if r % 2 == 0 else list(reversed(policies)) for r in range(rounds)]


def split_requests(total: int, rounds: int) -> list[int]:
    """``total`` requests over ``rounds`` as evenly as possible (earlier rounds get the rest)."""
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def _s(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def results_table(summaries: Mapping[str, Summary], models: Sequence[str]) -> list[str]:
    """The main markdown table: one row a policy."""
    rat = ratios(summaries, BASELINES)
    head = (
        "| policy | completed / sent | req/s | p50 (s) | p95 (s) | queue wait / req (s) | calls "
        + " / ".join(m.removeprefix("tiny-") for m in models)
        + " | req/s vs per-input | p50 vs per-input | req/s vs per-workflow"
        " | p50 vs per-workflow |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for p, s in summaries.items():
        shares = model_shares(s.mix, models)
        mix = " / ".join(f"{shares[m]:.0%}" for m in models)
        cells = []
        for b in BASELINES:
            tput, p50 = rat[p].get(b, (float("nan"), float("nan")))
            cells += [_x(tput), _x(p50)]
        lines.append(
            f"| {p} | {s.completed} / {s.sent} | {s.throughput:.3f} | {_s(s.p50_s)} | "
            f"{_s(s.p95_s)} | {_s(s.mean_queue_wait_s)} | {mix} | " + " | ".join(cells) + " |"
        )
    return lines


def mix_table(
    summaries: Mapping[str, Summary], stages: Sequence[str], models: Sequence[str]
) -> list[str]:
    """Calls per stage as ``s/m/l`` counts, one row a policy."""
    lines = ["| policy | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for p, s in summaries.items():
        cells = ["/".join(str(s.mix.get(st, {}).get(m, 0)) for m in models) for st in stages]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return lines


# --- the live run -----------------------------------------------------------------------------


def fleet_specs() -> list[EngineSpec]:
    return [
        EngineSpec(name, MODELS_DIR / name, free_port(), max_num_seqs=MAX_NUM_SEQS[name])
        for name in MODELS
    ]


def policy_config(fleet: LocalFleet, policy: str) -> dict[str, Any]:
    workflow: dict[str, Any] = {"policy": policy}
    if policy == "per-workflow":
        workflow["configuration"] = PER_WORKFLOW
    return fleet.gateway_config(
        {
            # Three engines and the gateway share two cores: a busy engine can take ~2 s to
            # answer /metrics, past the default scrape timeout meant for engines on their own GPUs.
            "poller": {"interval_s": 0.1, "timeout_s": 3.0, "stale_after_s": 30.0},
            "workflows_dir": str(REPO / "workflows" / "local"),
            "workflows": {WORKFLOW: workflow},
            # The scheduler is told where each engine saturates; beyond that calls only queue
            # inside vLLM, where nobody can move them to a less busy model.
            "scheduler": {"capacity": {m: {"saturation": n} for m, n in MAX_NUM_SEQS.items()}},
        }
    )


@contextmanager
def gateway(config: dict[str, Any], work: Path) -> Iterator[str]:
    """``aragog serve`` in its own process, as a user runs it; yields its URL."""
    port = free_port()
    path = work / f"gateway-{port}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    log = work / f"gateway-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aragog", "serve", "--config", str(path),
             "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/ready", proc, 60.0, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        tail = log.read_text(errors="replace").strip()
        if tail:  # warnings and errors only (--log-level warning): worth seeing
            print("    gateway log:\n      " + "\n      ".join(tail.splitlines()[-8:]))


def question(i: int, rng: random.Random) -> str:
    a, b, c, d = rng.sample([4, 6, 7, 8, 9, 10, 11, 12, 13, 15], 4)
    return QUESTION.format(i=i, a=a, b=b, c=c, d=d)


async def one_request(
    client: httpx.AsyncClient, policy: str, rnd: int, text: str, t0: float
) -> Sample:
    sent = time.monotonic() - t0
    body = {"input": text, "request_id": uuid.uuid4().hex}
    try:
        resp = await client.post(f"/v1/workflows/{WORKFLOW}/runs", json=body)
    except httpx.HTTPError as err:
        return Sample(policy, rnd, sent, None, type(err).__name__)
    done = time.monotonic() - t0
    if resp.status_code != 200:
        return Sample(policy, rnd, sent, None, f"HTTP {resp.status_code}")
    out = resp.json()
    config = {t["stage"]: t["model"] for t in out["stages"] if t["model"] is not None}
    wait = sum(float(t["queue_wait_s"]) for t in out["stages"])
    calls = [
        (t["model"], float(t["latency_s"]), int(t["completion_tokens"]))
        for t in out["stages"]
        if t["model"] is not None
    ]
    return Sample(policy, rnd, sent, done, None, config, wait, calls)


async def drive(
    url: str, policy: str, rnd: int, n: int, rate: float, seed: int, drain_s: float
) -> tuple[list[Sample], list[LoadPoint]]:
    """``n`` requests at Poisson ``rate``; the same ``seed`` gives the same arrivals and inputs
    to every policy. Requests still open ``drain_s`` after the last arrival count unfinished."""
    rng = random.Random(seed)
    arrivals, at = [], 0.0
    for _ in range(n):
        at += rng.expovariate(rate)
        arrivals.append(at)
    texts = [question(i, rng) for i in range(n)]
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as c:
        t0 = time.monotonic()
        tasks: list[asyncio.Task[Sample]] = []
        load: list[LoadPoint] = []
        reporter = asyncio.create_task(monitor(c, policy, rnd, n, tasks, t0, load))
        for i, when in enumerate(arrivals):
            await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))
            tasks.append(asyncio.create_task(one_request(c, policy, rnd, texts[i], t0)))
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        reporter.cancel()
        for task in pending:
            task.cancel()
        samples = []
        for i, task in enumerate(tasks):
            if task in pending:
                samples.append(Sample(policy, rnd, arrivals[i], None, "unfinished"))
            else:
                samples.append(task.result())
    return samples, load


async def monitor(
    client: httpx.AsyncClient,
    policy: str,
    rnd: int,
    n: int,
    tasks: list[asyncio.Task[Sample]],
    t0: float,
    load: list[LoadPoint],
) -> None:
    """Samples the gateway's load into ``load``; prints progress every PROGRESS_EVERY_S."""
    next_print = t0 + PROGRESS_EVERY_S
    while True:
        await asyncio.sleep(LOAD_EVERY_S)
        with contextlib.suppress(httpx.HTTPError):  # a missed sample only thins the statistic
            load.append(gateway_load((await client.get("/metrics")).text))
        if time.monotonic() < next_print:
            continue
        next_print += PROGRESS_EVERY_S
        done = [t.result() for t in tasks if t.done()]
        failed = sum(1 for s in done if s.error is not None)
        queue, inflight = load[-1] if load else (0.0, {})
        print(
            f"    {policy:<12} round {rnd}  {time.monotonic() - t0:5.0f}s  sent {len(tasks)}/{n}"
            f"  done {len(done) - failed}  failed {failed}  open {len(tasks) - len(done)}"
            f"  gateway queue {queue:.0f}  in flight s/m/l "
            + "/".join(f"{inflight.get(m, 0):.0f}" for m in MODELS),
            flush=True,
        )


def warm_up(fleet: LocalFleet) -> None:
    """One short generation per engine: the first call of an engine pays one-off costs."""
    for name in MODELS:
        httpx.post(
            fleet.url(name) + "/v1/completions",
            json={"model": name, "prompt": "warm up", "max_tokens": 8},
            timeout=60,
        ).raise_for_status()


Runs = dict[str, list[list[Sample]]]  # policy -> one list of samples a round
Loads = dict[str, list[LoadPoint]]  # policy -> load samples over all its rounds


def run_all(args: argparse.Namespace, work: Path) -> tuple[Runs, Loads]:
    per_round = split_requests(args.requests, args.rounds)
    runs: Runs = {p: [] for p in args.policies}
    loads: Loads = {p: [] for p in args.policies}
    t_start = time.monotonic()
    print(f"starting tiny-s/m/l (max_num_seqs {MAX_NUM_SEQS}) ...", flush=True)
    with LocalFleet(fleet_specs()) as fleet:
        for engine, secs in fleet.startup_seconds.items():
            print(f"  {engine} ready in {secs:.0f}s")
        warm_up(fleet)
        for rnd, order in enumerate(round_orders(args.policies, args.rounds), start=1):
            print(f"round {rnd}: {' '.join(order)}  ({per_round[rnd - 1]} requests each)")
            for policy in order:
                fleet.check_alive()
                with gateway(policy_config(fleet, policy), work) as url:
                    t0 = time.monotonic()
                    samples, load = asyncio.run(
                        drive(
                            url,
                            policy,
                            rnd,
                            per_round[rnd - 1],
                            args.rate,
                            args.seed + rnd,
                            args.drain,
                        )
                    )
                runs[policy].append(samples)
                loads[policy] += load
                s = summarize(policy, [samples])
                print(
                    f"  {policy:<12} round {rnd}: {s.completed}/{s.sent} done in "
                    f"{time.monotonic() - t0:.0f}s, {s.throughput:.3f} req/s, "
                    f"p50 {s.p50_s:.2f}s p95 {s.p95_s:.2f}s, calls s/m/l "
                    + "/".join(f"{v:.0%}" for v in model_shares(s.mix, MODELS).values())
                    + (f", errors {s.errors}" if s.errors else ""),
                    flush=True,
                )
        print(f"all runs done in {(time.monotonic() - t_start) / 60:.1f} min; stopping fleet")
    return runs, loads


# --- outputs ----------------------------------------------------------------------------------

READING = "## Reading"


def render(
    args: argparse.Namespace,
    summaries: Mapping[str, Summary],
    runs: Runs,
    loads: Loads,
    minutes: float,
    command: str,
) -> str:
    orders = round_orders(args.policies, args.rounds)
    lines = [
        "# Scheduling policies on the live local vLLM CPU fleet",
        "",
        f"Produced by `{command}` in {minutes:.1f} min on a {os.cpu_count()}-core machine "
        f"({time.strftime('%Y-%m-%d')}). Plot: `policies.png`; raw samples: `results.json`.",
        "",
        f"Setup: workflow `{WORKFLOW}` from workflows/local (4 parallel voters + aggregator, "
        f"each stage on tiny-s, tiny-m or tiny-l: {len(MODELS) ** len(STAGES)} "
        "configurations, max_tokens 16 a stage), one vLLM CPU engine per model with "
        "max_num_seqs "
        + ", ".join(f"{m} {n}" for m, n in MAX_NUM_SEQS.items())
        + " (the scheduler is told the same saturation). Poisson arrivals at "
        f"{args.rate} requests/s, {args.requests} requests per policy over {args.rounds} rounds "
        f"(orders: {'; '.join(' '.join(o) for o in orders)}), seed {args.seed}; every policy "
        "sees the same arrival times and inputs. A request still open "
        f"{args.drain:.0f} s after the last arrival counts as unfinished.",
        "",
        "- No trained router is configured, so C(r) is every configuration: aragog and greedy "
        "may put any stage on any model, and per-input's cheapest configuration in C(r) is "
        "all tiny-s.",
        "- per-workflow is pinned to the cheapest static configuration, every stage on tiny-s "
        "(so, without a router, it binds exactly as per-input does).",
        "- largest runs every stage on tiny-l and does not queue in the gateway.",
        "- The models are random: accuracy is not measured, only where calls go and the "
        "resulting throughput and latency. req/s counts completed requests over the time from "
        "a run's first arrival to its last completion.",
        "",
        "## Results",
        "",
        *results_table(summaries, MODELS),
        "",
        "Ratios: req/s above 1x and p50 below 1x are better than the baseline.",
        "",
        "## Calls per stage (tiny-s / tiny-m / tiny-l)",
        "",
        *mix_table(summaries, STAGES, MODELS),
        "",
        "## Per round (drift check)",
        "",
        "| policy | round | completed / sent | req/s | p50 (s) | p95 (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in args.policies:
        for samples in runs[p]:
            s = summarize(p, [samples])
            lines.append(
                f"| {p} | {samples[0].round if samples else '-'} | {s.completed} / {s.sent} | "
                f"{s.throughput:.3f} | {_s(s.p50_s)} | {_s(s.p95_s)} |"
            )
    lines += [
        "",
        "## Calls per model (queue wait in the gateway included)",
        "",
        "| policy | model | calls | mean call latency (s) | mean completion tokens |",
        "|---|---|---:|---:|---:|",
    ]
    for p in args.policies:
        stats = call_stats([s for samples in runs[p] for s in samples])
        for model, (n, latency, tokens) in stats.items():
            lines.append(f"| {p} | {model} | {n} | {latency:.3f} | {tokens:.1f} |")
    lines += [
        "",
        f"## Gateway meta-queue, sampled every {LOAD_EVERY_S} s from its /metrics",
        "",
        "A sample with calls queued while a model the policy may use had a free slot (in-flight "
        "below its max_num_seqs) means the scheduler held a call it could have placed.",
        "",
        "| policy | samples | with calls queued | of those, a usable slot free | max queue |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in args.policies:
        points = loads.get(p, [])
        most = max((q for q, _ in points), default=0.0)
        if p not in ALLOWED:
            lines.append(f"| {p} | {len(points)} | - | - (does not queue) | {most:.0f} |")
            continue
        queued, idle = idle_while_queued(points, ALLOWED[p], MAX_NUM_SEQS)
        lines.append(f"| {p} | {len(points)} | {queued} | {_pct(idle)} | {most:.0f} |")
    errors = {p: s.errors for p, s in summaries.items() if s.errors}
    lines += ["", f"Errors: {errors if errors else 'none'}.", ""]
    return "\n".join(lines)


def plot(summaries: Mapping[str, Summary], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(summaries)
    xs = range(len(names))
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 4))
    a1.bar(xs, [summaries[p].throughput for p in names], color="tab:blue")
    a1.set_ylabel("completed requests/s")
    width = 0.4
    a2.bar([x - width / 2 for x in xs], [summaries[p].p50_s for p in names], width, label="p50")
    a2.bar([x + width / 2 for x in xs], [summaries[p].p95_s for p in names], width, label="p95")
    a2.set_ylabel("end-to-end latency (s)")
    a2.legend()
    bottom = [0.0] * len(names)
    for m in MODELS:
        share = [model_shares(summaries[p].mix, MODELS)[m] for p in names]
        a3.bar(xs, share, bottom=bottom, label=m)
        bottom = [b + s for b, s in zip(bottom, share, strict=True)]
    a3.set_ylabel("share of calls")
    a3.legend()
    for ax in (a1, a2, a3):
        ax.set_xticks(list(xs), names, rotation=20)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_outputs(args: argparse.Namespace, runs: Runs, loads: Loads, minutes: float) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    summaries = {p: summarize(p, runs[p]) for p in args.policies}
    command = "flock /tmp/aragog-fleet.lock .venv/bin/python " + shlex.join(
        [str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]]
    )
    text = render(args, summaries, runs, loads, minutes, command)
    results = out / "RESULTS.md"
    # A hand-written reading of an earlier run is kept below the regenerated numbers.
    if results.is_file() and READING in (old := results.read_text()):
        text += "\n" + old[old.index(READING) :]
    results.write_text(text)
    raw = {p: [asdict(s) for run in rs for s in run] for p, rs in runs.items()}
    (out / "results.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(out)}, "samples": raw})
    )
    title = (
        f"{WORKFLOW} on live tiny vLLM CPU engines, {args.rate} req/s Poisson, "
        f"{args.requests} requests per policy"
    )
    drew = plot(summaries, out / "policies.png", title)
    print("\n".join(results_table(summaries, MODELS)))
    print(f"wrote {results}" + (" and policies.png" if drew else " (no matplotlib: no plot)"))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=4.0, help="workflow requests/s (Poisson)")
    ap.add_argument("--requests", type=int, default=160, help="requests per policy, all rounds")
    ap.add_argument("--rounds", type=int, default=2, help="odd rounds run in reverse order")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--drain",
        type=float,
        default=40.0,
        help="seconds after the last arrival before open requests are dropped",
    )
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "live")
    args = ap.parse_args()
    if args.rate <= 0 or args.requests < args.rounds:
        ap.error("--rate must be > 0 and --requests at least --rounds")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aragog-live-") as tmp:
        runs, loads = run_all(args, Path(tmp))
    write_outputs(args, runs, loads, (time.monotonic() - t0) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
