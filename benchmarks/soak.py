"""Soak: sustained mixed load through a real ``aragog serve`` process, its RSS over time.

The engines are fakes (tests/fake_engine.py under uvicorn in a child process) so that the
gateway, not the engines, is the bottleneck and the run fits on a laptop; ``--fleet``
points the gateway at real vLLM engines instead (a gateway config's fleet section). Load:
plain calls, streams, workflow calls (largest and aragog policies) with fresh request ids
(so request state churns through its TTL and cap), malformed requests, and clients that
disconnect mid-stream. Prints a table of RSS, throughput and statuses per interval; writes
soak.md and (with matplotlib) soak.png next to ``--out``.

    .venv/bin/python benchmarks/soak.py --seconds 180
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aragog.localfleet import free_port, wait_http  # noqa: E402

MSG = [{"role": "user", "content": "soak"}]
_ENGINE_APP = """
import sys, uvicorn
sys.path.insert(0, {repo!r})
from tests.fake_engine import FakeEngine
engine = FakeEngine(sys.argv[1])
uvicorn.run(engine.app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="error")
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_fakes(work: Path) -> tuple[list[subprocess.Popen[bytes]], dict[str, str]]:
    script = work / "engine.py"
    script.write_text(_ENGINE_APP.format(repo=str(REPO)))
    procs, urls = [], {}
    for host in ("small-a", "small-b", "large"):
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, str(script), host, str(port)]))
        urls[host] = f"http://127.0.0.1:{port}"
    for url in urls.values():
        wait_http(url + "/metrics", accept=lambda status: status < 500)
    return procs, urls


def gateway_config(urls: dict[str, str]) -> dict[str, object]:
    return {
        "fleet": {"models": [
            {"name": "small", "cost": 1, "engines": [
                {"url": urls["small-a"], "served_model_name": "s"},
                {"url": urls["small-b"], "served_model_name": "s"}]},
            {"name": "large", "cost": 8, "engines": [{"url": urls["large"]}]},
        ]},
        "workflows_dir": str(REPO / "benchmarks" / "soak"),
        "workflows": {"wf": {"policy": "aragog"}, "wf2": {"policy": "largest"}},
        "state": {"ttl_s": 30, "max_requests": 5000},
        "limits": {"max_tokens": 512},
    }


async def one_call(client: httpx.AsyncClient, rng: random.Random, stats: Counter[str]) -> None:
    kind = rng.choices(["plain", "stream", "wf", "wf2", "bad", "disconnect"],
                       [30, 25, 20, 10, 10, 5])[0]
    body: dict[str, object] = {"model": rng.choice(["small", "large"]), "messages": MSG,
                               "max_tokens": 8}
    headers = {}
    if kind in ("wf", "wf2"):
        rid = f"r{rng.getrandbits(40)}"
        headers = {"X-Aragog-Workflow": kind, "X-Aragog-Request-Id": rid,
                   "X-Aragog-Stage": rng.choice(["gen", "judge"])}
    if kind == "bad":
        content = rng.choice([b"{nope", b"[]", json.dumps({"model": 3}).encode(),
                              json.dumps({"model": "x", "messages": MSG}).encode()])
        r = await client.post("/v1/chat/completions", content=content, headers=headers)
        stats[str(r.status_code)] += 1
        return
    if kind in ("stream", "disconnect"):
        body["stream"] = True
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            async for _ in r.aiter_bytes():
                if kind == "disconnect":
                    break  # leave mid-stream: the gateway must free the slot
        stats["disconnect" if kind == "disconnect" else str(r.status_code)] += 1
        return
    r = await client.post("/v1/chat/completions", json=body, headers=headers)
    stats[str(r.status_code)] += 1


async def drive(url: str, seconds: float, concurrency: int, pid: int, every: float
                ) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    stats: Counter[str] = Counter()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker(i: int) -> None:
            rng = random.Random(i)
            while time.monotonic() < stop:
                try:
                    await one_call(client, rng, stats)
                except httpx.HTTPError as err:
                    stats[type(err).__name__] += 1

        async def sampler() -> None:
            t0 = time.monotonic()
            last = 0
            while time.monotonic() < stop:
                await asyncio.sleep(every)
                done = sum(stats.values())
                row = {"t_s": round(time.monotonic() - t0), "rss_mb": round(rss_mb(pid), 1),
                       "calls_per_s": round((done - last) / every, 1), "total": done,
                       "statuses": dict(sorted(stats.items()))}
                last = done
                m = (await client.get("/metrics")).text
                row["states"] = next((float(ln.split()[-1]) for ln in m.splitlines()
                                      if ln.startswith("aragog_request_states ")), -1)
                row["inflight"] = sum(float(ln.split()[-1]) for ln in m.splitlines()
                                      if ln.startswith("aragog_engine_inflight{"))
                rows.append(row)
                print(f"{row['t_s']:>5}s  rss {row['rss_mb']:>7} MB  {row['calls_per_s']:>7}/s"
                      f"  states {row['states']:>6.0f}  inflight {row['inflight']:>3.0f}"
                      f"  {row['statuses']}", flush=True)

        await asyncio.gather(sampler(), *(worker(i) for i in range(concurrency)))
    return rows


def write_outputs(rows: list[dict[str, object]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| t (s) | RSS (MB) | calls/s | request states | in flight |", "|---|---|---|---|---|"]
    lines += [f"| {r['t_s']} | {r['rss_mb']} | {r['calls_per_s']} | {r['states']:.0f} | "
              f"{r['inflight']:.0f} |" for r in rows]
    last = rows[-1]
    lines.append(f"\nStatuses over the run: {last['statuses']}")
    (out / "soak.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r["t_s"] for r in rows], [r["rss_mb"] for r in rows], marker=".")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("gateway RSS (MB)")
    ax.set_title("Aragog gateway soak: RSS under sustained mixed load")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--every", type=float, default=10, help="sampling interval (s)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "soak" / "out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fakes, urls = start_fakes(work)
        port = free_port()
        cfg = work / "gateway.yaml"
        cfg.write_text(json.dumps(gateway_config(urls)))
        gw = subprocess.Popen([sys.executable, "-m", "aragog", "serve", "--config", str(cfg),
                               "--port", str(port), "--log-level", "warning"], cwd=REPO)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/ready", gw)
            print(f"gateway pid {gw.pid}, {args.concurrency} clients, {args.seconds:.0f}s")
            rows = asyncio.run(drive(url, args.seconds, args.concurrency, gw.pid, args.every))
        finally:
            for p in [gw, *fakes]:
                p.terminate()
                p.wait(10)
    write_outputs(rows, args.out)
    first, peak, last = rows[0]["rss_mb"], max(float(r["rss_mb"]) for r in rows), rows[-1]
    print(f"RSS first {first} MB, peak {peak} MB, last {last['rss_mb']} MB; "
          f"wrote {args.out}/soak.md" + (" and soak.png" if (args.out / "soak.png").exists()
                                        else ""))
    return 0 if os.environ.get("SOAK_STRICT") != "1" or float(last["inflight"]) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
