"""``make demo``: a local vLLM CPU fleet, the gateway in front of it, and workflow load.

Starts three tiny engines (configs/local.yaml's ports), runs ``aragog serve`` on that config,
drives ``refine`` (a chain) and ``voting`` (parallel voters + aggregator) requests through
it with the openai SDK, and prints what the gateway saw: model mix per stage, latency, and the
engines' load as the poller scraped it. The models are random, so the text is noise; the
routing, streaming and metrics are real.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

from aragog.localfleet import MODELS_DIR, EngineSpec, LocalFleet

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "local.yaml"


def _fleet_specs() -> list[EngineSpec]:
    cfg = yaml.safe_load(CONFIG.read_text())
    return [
        EngineSpec(m["name"], MODELS_DIR / m["name"], int(m["engines"][0]["url"].rsplit(":", 1)[1]))
        for m in cfg["fleet"]["models"]
    ]


class Driver:
    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=120)
        self.mix: Counter[tuple[str, str, str]] = Counter()
        self.latency: list[float] = []
        self.lock = threading.Lock()

    def call(self, workflow: str, rid: str, stage: str, prompt: str) -> str:
        resp = self.client.post(
            "/v1/chat/completions",
            headers={
                "X-Aragog-Workflow": workflow,
                "X-Aragog-Request-Id": rid,
                "X-Aragog-Stage": stage,
            },
            json={
                "model": "aragog",
                "max_tokens": 24,
                "messages": [{"role": "user", "content": prompt}],
            },
        )
        resp.raise_for_status()
        with self.lock:
            self.mix[(workflow, stage, resp.headers["x-aragog-model"])] += 1
        return str(resp.json()["choices"][0]["message"]["content"])

    def refine(self, i: int) -> None:
        rid, t0 = uuid.uuid4().hex, time.perf_counter()
        draft = self.call("refine", rid, "generate", f"Question {i}: why do queues form?")
        notes = self.call("refine", rid, "critique", f"Critique: {draft}")
        self.call("refine", rid, "refine", f"Improve {draft} using {notes}")
        with self.lock:
            self.latency.append(time.perf_counter() - t0)

    def voting(self, i: int) -> None:
        rid, t0 = uuid.uuid4().hex, time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            votes = list(
                pool.map(
                    lambda v: self.call("voting", rid, f"voter{v}", f"Vote on {i}"), range(1, 5)
                )
            )
        self.call("voting", rid, "aggregate", "Tally: " + " | ".join(votes))
        with self.lock:
            self.latency.append(time.perf_counter() - t0)


def _gauges(base: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith(("aragog_engine_running{", "aragog_engine_waiting{")):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def run(requests: int, concurrency: int) -> None:
    specs = _fleet_specs()
    print(f"starting {len(specs)} vLLM CPU engines (tiny random Llamas) ...", flush=True)
    with LocalFleet(specs) as fleet:
        print(
            "engines ready in "
            + ", ".join(f"{k} {v:.0f}s" for k, v in fleet.startup_seconds.items()),
            flush=True,
        )
        port = yaml.safe_load(CONFIG.read_text())["server"]["port"]
        base = f"http://127.0.0.1:{port}"
        gw = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aragog",
                "serve",
                "--config",
                str(CONFIG),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            print(
                f"gateway ready on {base}; driving {requests} workflow requests, "
                f"{concurrency} at a time",
                flush=True,
            )
            driver = Driver(base)
            peak: dict[str, float] = {}
            jobs = [(driver.refine if i % 2 else driver.voting, i) for i in range(requests)]
            with ThreadPoolExecutor(concurrency) as pool:
                futures = [pool.submit(fn, i) for fn, i in jobs]
                while not all(f.done() for f in futures):
                    for k, v in _gauges(base).items():
                        peak[k] = max(peak.get(k, 0.0), v)
                    done = sum(f.done() for f in futures)
                    print(f"\r  {done}/{requests} requests done", end="", flush=True)
                    time.sleep(0.2)
                for f in futures:
                    f.result()
            print()
            _summary(driver, peak, base)
        finally:
            gw.terminate()
            gw.wait(10)


def _summary(driver: Driver, peak: dict[str, float], base: str) -> None:
    print("\nmodel mix per stage (policy: largest = every stage on its biggest candidate)")
    for (wf, stage, model), n in sorted(driver.mix.items()):
        print(f"  {wf:8} {stage:10} {model:8} {n}")
    lat = sorted(driver.latency)
    print(
        f"\nrequest latency: p50 {statistics.median(lat):.2f}s  "
        f"p95 {lat[int(0.95 * (len(lat) - 1))]:.2f}s  over {len(lat)} requests"
    )
    print("\npeak engine load seen by the poller")
    for k, v in sorted(peak.items()):
        print(f"  {k} {v:.0f}")
    print(f"\nmetrics were at {base}/metrics (gateway) and each engine's /metrics")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=6)
    args = ap.parse_args(argv)
    run(args.requests, args.concurrency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
