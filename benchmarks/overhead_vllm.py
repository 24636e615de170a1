"""Gateway overhead against a real vLLM CPU engine: the same calls direct and through Aragog,
side by side in one run, alternated A B B A so drift on this shared machine cancels.

    .venv/bin/python benchmarks/overhead_vllm.py [--calls 200]

Prints a markdown table (also written to benchmarks/out/overhead_vllm.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from aragog.localfleet import MODELS_DIR, EngineSpec, LocalFleet, free_port, wait_http

REPO = Path(__file__).resolve().parents[1]
BODY = {"model": "tiny-s", "prompt": "hello", "max_tokens": 1, "temperature": 0}


def timed(client: httpx.Client, url: str, stream: bool) -> float:
    """Seconds to the full answer (non-streaming) or to the first byte (streaming)."""
    start = time.perf_counter()
    if stream:
        with client.stream("POST", url, json={**BODY, "stream": True}) as resp:
            chunks = resp.iter_raw()
            next(chunks)
            elapsed = time.perf_counter() - start
            for _ in chunks:
                pass
        return elapsed
    resp = client.post(url, json=BODY)
    resp.raise_for_status()
    return time.perf_counter() - start


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1e3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200, help="calls per mode and path")
    args = ap.parse_args()
    spec = EngineSpec("tiny-s", MODELS_DIR / "tiny-s", free_port())
    with LocalFleet([spec]) as fleet, tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gw.json"
        cfg.write_text(json.dumps(fleet.gateway_config()))
        port = free_port()
        gw = subprocess.Popen([sys.executable, "-m", "aragog", "serve", "--config", str(cfg),
                               "--port", str(port), "--log-level", "warning"], cwd=REPO)
        try:
            gw_url = f"http://127.0.0.1:{port}"
            wait_http(gw_url + "/ready", gw)
            paths = {"direct": spec.url, "aragog": gw_url}
            rows = []
            for stream in (False, True):
                samples: dict[str, list[float]] = {"direct": [], "aragog": []}
                with httpx.Client(timeout=30) as client:
                    for name in paths:  # warm both paths' connections and caches
                        for _ in range(20):
                            timed(client, paths[name] + "/v1/completions", stream)
                    block = max(1, args.calls // 10)
                    for i in range(10):
                        order = ["direct", "aragog"] if i % 2 == 0 else ["aragog", "direct"]
                        for name in order:
                            for _ in range(block):
                                samples[name].append(
                                    timed(client, paths[name] + "/v1/completions", stream))
                        print(f"  {'stream' if stream else 'whole'} block {i + 1}/10",
                              file=sys.stderr)
                d, a = samples["direct"], samples["aragog"]
                rows.append((
                    "to first byte (stream)" if stream else "full answer (non-stream)",
                    pct(d, 0.5), pct(a, 0.5), pct(a, 0.5) - pct(d, 0.5),
                    pct(d, 0.99), pct(a, 0.99),
                    (statistics.median(a) / statistics.median(d)),
                ))
        finally:
            gw.terminate()
            gw.wait(10)
    lines = [
        f"Gateway vs direct, one tiny-s vLLM CPU engine, concurrency 1, "
        f"{args.calls} calls per cell (completions, max_tokens=1), A B B A blocks.",
        "",
        "| measure | direct p50 ms | aragog p50 ms | added p50 ms | direct p99 ms | "
        "aragog p99 ms | ratio p50 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:+.2f} | {r[4]:.2f} | {r[5]:.2f} | "
              f"{r[6]:.3f} |" for r in rows]
    out = REPO / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead_vllm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
