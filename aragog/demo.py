"""``make demo``: Aragog in front of a real local vLLM CPU fleet, under workflow load, with a
live view; or (``--sim``) the same view of the simulated H100 fleet on real recorded answers.

Local mode starts three tiny engines (configs/local.yaml's ports), runs ``aragog serve`` on
that config with the just-in-time scheduler (``--policy``), drives ``refine`` (a chain) and
``voting`` (parallel voters + aggregator) requests through it with the openai SDK, and draws
per-engine load, the model mix per stage, queue waits and latency as the gateway reports them
(/status.json). The models are random, so the text is noise; routing, scheduling, streaming
and metrics are real. It ends with a summary and the URLs of /metrics and /status.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from openai import OpenAI
from rich.console import Console

from aragog import demo_sim
from aragog.api.status import StatusView
from aragog.dashboard import fetch, watch
from aragog.localfleet import LOGS_DIR, MODELS_DIR, EngineSpec, LocalFleet, to_yaml, wait_http

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "local.yaml"
DEMO_CONFIG = LOGS_DIR.parent / "demo-gateway.yaml"
POLICIES = ("aragog", "greedy", "per-input", "per-input-load", "per-workflow", "largest")
# Engines batch at most this many sequences, and the scheduler is told so: beyond it calls
# would only queue inside vLLM, where nobody can move them to a less busy model.
MAX_NUM_SEQS = 4


def demo_config(policy: str) -> dict[str, Any]:
    """configs/local.yaml with every workflow on ``policy`` and engine capacity stated."""
    cfg: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    cfg["workflows_dir"] = str((CONFIG.parent / cfg["workflows_dir"]).resolve())
    cfg["workflows"] = {name: {"policy": policy} for name in cfg["workflows"]}
    cfg["scheduler"] = {
        "capacity": {m["name"]: {"saturation": MAX_NUM_SEQS} for m in cfg["fleet"]["models"]}
    }
    return cfg


def fleet_specs(cfg: dict[str, Any]) -> list[EngineSpec]:
    return [
        EngineSpec(
            m["name"],
            MODELS_DIR / m["name"],
            int(e["url"].rsplit(":", 1)[1]),
            max_num_seqs=MAX_NUM_SEQS,
        )
        for m in cfg["fleet"]["models"]
        for e in m["engines"]
    ]


class Driver:
    """Agent-app load: each request runs its workflow's stages as tagged openai SDK calls."""

    def __init__(self, base: str, max_tokens: int) -> None:
        self.client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        self.max_tokens = max_tokens
        self.latency: list[float] = []
        self.failed: Counter[str] = Counter()
        self.lock = threading.Lock()

    def call(self, workflow: str, rid: str, stage: str, prompt: str) -> str:
        resp = self.client.chat.completions.create(
            model="aragog",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=self.max_tokens,
            extra_headers={
                "X-Aragog-Workflow": workflow,
                "X-Aragog-Request-Id": rid,
                "X-Aragog-Stage": stage,
            },
        )
        return resp.choices[0].message.content or ""

    def refine(self, i: int) -> None:
        rid = uuid.uuid4().hex
        draft = self.call("refine", rid, "generate", f"Question {i}: why do queues form?")
        notes = self.call("refine", rid, "critique", f"Critique: {draft}")
        self.call("refine", rid, "refine", f"Improve {draft} using {notes}")

    def voting(self, i: int) -> None:
        rid = uuid.uuid4().hex
        with ThreadPoolExecutor(4) as pool:
            votes = list(
                pool.map(lambda v: self.call("voting", rid, f"voter{v}", f"Vote {i}"), range(1, 5))
            )
        self.call("voting", rid, "aggregate", "Tally: " + " | ".join(votes))

    def timed(self, job: Callable[[int], None], i: int) -> None:
        t0 = time.perf_counter()
        try:
            job(i)
        except Exception as err:  # one failed request is reported, not fatal to the demo
            with self.lock:
                self.failed[type(err).__name__] += 1
            return
        with self.lock:
            self.latency.append(time.perf_counter() - t0)


def start_gateway(config: Path, base: str, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
    log = (LOGS_DIR / "demo-gateway.log").open("wb")
    cmd = [sys.executable, "-m", "aragog", "serve", "--config", str(config)]
    gw = subprocess.Popen([*cmd, "--log-level", "warning"], cwd=REPO, stdout=log, stderr=log)
    try:
        wait_http(base + "/ready", gw, timeout_s, Path(log.name))
    except RuntimeError:
        gw.terminate()
        raise
    return gw


def drive(
    base: str, args: argparse.Namespace, console: Console
) -> tuple[Driver, StatusView | None]:
    driver = Driver(base, args.max_tokens)
    stop = threading.Event()
    started = time.perf_counter()
    jobs = [driver.voting if i % 2 else driver.refine for i in range(args.requests)]
    with ThreadPoolExecutor(args.concurrency) as pool, httpx.Client(timeout=5.0) as http:
        futures: list[Future[None]] = [pool.submit(driver.timed, j, i) for i, j in enumerate(jobs)]
        threading.Thread(target=_wait_all, args=(futures, stop), daemon=True).start()

        def footer() -> str:
            done = sum(f.done() for f in futures)
            return (
                f"{done}/{args.requests} workflow requests done, {args.concurrency} at a time, "
                f"{time.perf_counter() - started:.0f}s  ·  {base}/status in a browser"
            )

        last = watch(
            lambda: fetch(base, http),
            stop,
            title=f"Aragog demo: local vLLM CPU fleet, policy {args.policy}",
            footer=footer,
            console=console,
        )
    return driver, last


def _wait_all(futures: list[Future[None]], done: threading.Event) -> None:
    for f in futures:
        f.exception()
    done.set()


def summary(driver: Driver, last: StatusView | None, base: str, ports: list[int]) -> str:
    lines = ["", "summary"]
    lat = sorted(driver.latency)
    if lat:
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        lines.append(
            f"  workflow request latency: p50 {statistics.median(lat):.2f}s  p95 {p95:.2f}s  "
            f"over {len(lat)} requests"
        )
    if driver.failed:
        lines.append(f"  failed requests: {dict(driver.failed)}")
    if last is not None:
        for w in (w for w in last["workflows"] if w["calls"]):
            lines.append(
                f"  {w['name']} ({w['policy']}): {w['calls']} calls, mean wait "
                f"{(w['wait_mean_s'] or 0) * 1000:.0f} ms"
            )
            for s in w["stages"]:
                n = sum(s["mix"].values()) or 1
                mix = ", ".join(f"{m} {c / n:.0%}" for m, c in sorted(s["mix"].items()))
                lines.append(f"    {s['name']:10} {mix or '-'}")
    lines += [
        "",
        f"  gateway metrics  {base}/metrics   status page {base}/status",
        "  engine metrics   " + "  ".join(f"http://127.0.0.1:{p}/metrics" for p in ports),
    ]
    return "\n".join(lines)


def run_local(args: argparse.Namespace) -> int:
    console = Console()
    cfg = demo_config(args.policy)
    specs = fleet_specs(cfg)
    base = f"http://{cfg['server']['host']}:{cfg['server']['port']}"
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    DEMO_CONFIG.write_text("# written by `python -m aragog.demo`\n" + to_yaml(cfg))
    console.print(f"starting {len(specs)} vLLM CPU engines (tiny random Llamas), ~45 s ...")
    with LocalFleet(specs) as fleet:
        ready = ", ".join(f"{k} {v:.0f}s" for k, v in fleet.startup_seconds.items())
        console.print(f"engines ready: {ready}")
        gw = start_gateway(DEMO_CONFIG, base)
        try:
            driver, last = drive(base, args, console)
            console.print(summary(driver, last, base, [s.port for s in specs]))
            if args.hold:
                console.print("\nholding the fleet and gateway up; Ctrl-C stops them")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        fleet.check_alive()
                        time.sleep(1.0)
        finally:
            gw.terminate()
            gw.wait(10)
    return 1 if driver.failed else 0


def run_sim(args: argparse.Namespace) -> int:
    """The simulated H100 fleet (aragog.sim) under the same live view."""
    if args.requests is None:
        args.requests = 300
    return demo_sim.run(args, Console())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aragog.demo", description=__doc__)
    ap.add_argument("--sim", action="store_true", help="the simulated H100 fleet instead")
    ap.add_argument("--policy", choices=POLICIES, default="aragog")
    ap.add_argument("--requests", type=int, help="workflow requests (default 24; --sim 300)")
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--hold", action="store_true", help="keep everything up afterwards")
    demo_sim.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.sim:
        return run_sim(args)
    if args.requests is None:
        args.requests = 24
    return run_local(args)


if __name__ == "__main__":
    raise SystemExit(main())
