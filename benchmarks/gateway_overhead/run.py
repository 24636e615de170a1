"""Gateway overhead, side by side in one run: direct to a trivial upstream, through Aragog,
and through a LiteLLM proxy configured the same way (1 worker, uvloop, no database,
telemetry and network look-ups off). Runs alternate A B C C B A per cell so drift cancels.

    .venv/bin/python benchmarks/gateway_overhead/run.py [--quick]

Needs `.venv-litellm` (`python3 -m venv .venv-litellm && .venv-litellm/bin/pip install
'litellm[proxy]==1.108.7'`); without it the LiteLLM column is left out and said so.
Writes benchmarks/gateway_overhead/out/{results.md,results.csv,latency.png,throughput.png}.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from loadgen import Sample, build_request, closed_loop  # noqa: E402

from aragog.localfleet import free_port, wait_http  # noqa: E402

LITELLM = REPO / ".venv-litellm" / "bin" / "litellm"
HOST = "127.0.0.1"
PROMPT = [{"role": "user", "content": "Say hi in five words."}]
# LiteLLM refuses to start without a master key; every target gets the same header.
KEY = "sk-bench-0123456789abcdef0123456789abcdef"


@dataclass
class Target:
    name: str
    port: int
    pid: int
    path: str = "/v1/chat/completions"


@contextmanager
def process(
    cmd: list[str], url: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[int]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        wait_http(url, proc, 90.0, log, accept=lambda status: status < 500)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def aragog_config(upstream: int, artifact: Path, workdir: Path) -> Path:
    """Three fleet models on the one upstream, and a cascade workflow with a trained router
    (SYNTHETIC labels) and the `aragog` scheduler, so tagged calls pay for both."""
    from tests.router.conftest import COST

    wf_dir = workdir / "workflows"
    wf_dir.mkdir()
    (wf_dir / "bench.yaml").write_text(
        json.dumps(
            {
                "name": "cascade-toy",
                "stages": [
                    {"name": n, "models": ["s", "m", "l"]}
                    for n in ("solver_a", "solver_b", "judge")
                ],
                "edges": [["solver_a", "judge"], ["solver_b", "judge"]],
            }
        )
    )
    url = f"http://{HOST}:{upstream}"
    cfg = {
        "fleet": {
            "models": [
                {"name": m, "cost": c, "engines": [{"url": url, "served_model_name": "fast"}]}
                for m, c in COST.items()
            ]
        },
        "workflows_dir": str(wf_dir),
        "workflows": {
            "cascade-toy": {
                "policy": "aragog",
                "router": {"artifact": str(artifact), "embedder": "hashing:256"},
            }
        },
        # The upstream has no batch limit: do not let the default saturation throttle it.
        "scheduler": {"default_saturation": 4096},
    }
    path = workdir / "aragog.json"
    path.write_text(json.dumps(cfg))
    return path


def train_artifact(workdir: Path) -> Path:
    from aragog.router.embedders import HashingEmbedder
    from aragog.router.mlp import TrainParams
    from aragog.router.train import TrainOptions, train_router
    from tests.router.conftest import COST, cascade_spec, toy_labels

    opts = TrainOptions(folds=2, params=TrainParams(hidden=16, max_epochs=8))
    art, _ = asyncio.run(
        train_router(toy_labels(), cascade_spec(), COST, HashingEmbedder(256), opts)
    )
    path = workdir / "router.npz"
    art.save(path)
    return path


def litellm_config(upstream: int, workdir: Path) -> Path:
    path = workdir / "litellm.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: s\n"
        "    litellm_params:\n"
        "      model: openai/fast\n"
        f"      api_base: http://{HOST}:{upstream}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  turn_off_message_logging: true\n"
    )
    return path


def bodies(n: int, stream: bool, tagged: bool) -> list[tuple[bytes, dict[str, str]]]:
    body = {
        "model": "s",
        "messages": PROMPT,
        "max_tokens": 16,
        **({"stream": True} if stream else {}),
    }
    raw = json.dumps(body).encode()
    auth = {"Authorization": f"Bearer {KEY}"}
    if not tagged:
        return [(raw, auth)]
    return [
        (
            raw,
            {
                **auth,
                "X-Aragog-Workflow": "cascade-toy",
                "X-Aragog-Stage": "solver_a",
                "X-Aragog-Request-Id": uuid.uuid4().hex,
            },
        )
        for _ in range(n)
    ]


def cpu_seconds(pid: int) -> float:
    p = psutil.Process(pid)
    t = p.cpu_times()
    kids = sum(c.cpu_times().user + c.cpu_times().system for c in p.children(recursive=True))
    return t.user + t.system + kids


def measure(
    target: Target, stream: bool, tagged: bool, conc: int, quick: bool
) -> tuple[list[Sample], float, float]:
    n = (150 if quick else 400) if conc == 1 else 0
    duration = None if conc == 1 else (2.0 if quick else 4.0)
    reqs = [
        build_request(HOST, target.port, target.path, b, h)
        for b, h in bodies(max(n, 20000 if tagged else 1), stream, tagged)
    ]
    if conc == 1:
        reqs = reqs[:n] if tagged else reqs * n
    cpu0 = cpu_seconds(target.pid)
    samples, wall = asyncio.run(closed_loop(HOST, target.port, reqs, conc, duration))
    return samples, wall, cpu_seconds(target.pid) - cpu0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1e3 if s else float("nan")


def run(quick: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        up_port, gw_port, ll_port = free_port(), free_port(), free_port()
        artifact = train_artifact(work)
        py = str(REPO / ".venv" / "bin" / "python")
        with (
            process(
                [py, str(HERE / "upstream.py"), str(up_port)], f"http://{HOST}:{up_port}/metrics"
            ) as up_pid,
            process(
                [
                    py,
                    "-m",
                    "aragog",
                    "serve",
                    "--config",
                    str(aragog_config(up_port, artifact, work)),
                    "--port",
                    str(gw_port),
                    "--log-level",
                    "warning",
                ],
                f"http://{HOST}:{gw_port}/ready",
                log=work / "aragog.log",
            ) as gw_pid,
        ):
            targets = [Target("direct", up_port, up_pid), Target("aragog", gw_port, gw_pid)]
            ll = None
            if LITELLM.exists():
                env = {
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "LITELLM_TELEMETRY": "False",
                    "DISABLE_SCHEMA_UPDATE": "True",
                    "LITELLM_LOG": "ERROR",
                    "LITELLM_MASTER_KEY": KEY,
                }
                ll = process(
                    [
                        str(LITELLM),
                        "--config",
                        str(litellm_config(up_port, work)),
                        "--host",
                        HOST,
                        "--port",
                        str(ll_port),
                        "--num_workers",
                        "1",
                    ],
                    f"http://{HOST}:{ll_port}/health/liveliness",
                    env,
                    log=work / "litellm.log",
                )
            else:
                print("no .venv-litellm: LiteLLM column left out", file=sys.stderr)
            with ll if ll is not None else _nothing() as ll_pid:
                if ll_pid is not None:
                    targets.append(Target("litellm", ll_port, ll_pid))
                rows = _cells(targets, quick)
    return rows


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _cells(targets: list[Target], quick: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    cells = [(s, c) for s in (False, True) for c in (1, 32, 256)]
    for i, (stream, conc) in enumerate(cells, 1):
        runs = [(t, False) for t in targets] + [(targets[1], True)]
        order = runs + runs[::-1]  # A B C D D C B A: linear drift cancels
        pooled: dict[tuple[str, bool], tuple[list[Sample], float, float]] = {}
        for t, tagged in order:
            for _ in range(2 if conc == 1 else 0):  # warm connections and code paths
                measure(t, stream, tagged, 1, True)
            s, w, cpu = measure(t, stream, tagged, conc, quick)
            old = pooled.get((t.name, tagged), ([], 0.0, 0.0))
            pooled[(t.name, tagged)] = (old[0] + s, old[1] + w, old[2] + cpu)
        for (name, tagged), (samples, wall, cpu) in pooled.items():
            ok = [x for x in samples if x.status == 200]
            rows.append(
                {
                    "stream": stream,
                    "concurrency": conc,
                    "target": name + (" (workflow-tagged)" if tagged else ""),
                    "n": len(samples),
                    "errors": len(samples) - len(ok),
                    "p50_ms": pct([x.total for x in ok], 0.5),
                    "p99_ms": pct([x.total for x in ok], 0.99),
                    "ttfb_p50_ms": pct([x.ttfb for x in ok], 0.5),
                    "rps": len(ok) / wall if wall else 0.0,
                    "cpu_ms_per_req": 1e3 * cpu / max(len(samples), 1),
                }
            )
        print(
            f"[{i}/{len(cells)}] {'stream' if stream else 'whole '} c={conc} done",
            file=sys.stderr,
            flush=True,
        )
    return rows


def report(rows: list[dict[str, object]], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    direct = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "direct"}
    lines = [
        "| mode | conc | target | p50 ms | added p50 ms | p99 ms | TTFB p50 ms | added TTFB "
        "ms | req/s | CPU ms/req (gateway) | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d = direct[(r["stream"], r["concurrency"])]
        lines.append(
            f"| {'stream' if r['stream'] else 'whole'} | {r['concurrency']} | {r['target']} | "
            f"{r['p50_ms']:.2f} | {float(r['p50_ms']) - float(d['p50_ms']):+.2f} | "  # type: ignore[arg-type]
            f"{r['p99_ms']:.2f} | {r['ttfb_p50_ms']:.2f} | "
            f"{float(r['ttfb_p50_ms']) - float(d['ttfb_p50_ms']):+.2f} | "  # type: ignore[arg-type]
            f"{r['rps']:.0f} | {r['cpu_ms_per_req']:.3f} | {r['errors']} |"
        )
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    _plots(rows, out)
    return table


def _plots(rows: list[dict[str, object]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({str(r["target"]) for r in rows})
    for metric, fname, ylabel in (
        ("rps", "throughput.png", "requests/s"),
        ("p50_ms", "latency.png", "p50 latency (ms)"),
    ):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, stream in zip(axes, (False, True), strict=True):
            for t in targets:
                pts = [
                    (r["concurrency"], r[metric])
                    for r in rows
                    if r["target"] == t and r["stream"] == stream
                ]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=t)
            ax.set_xscale("log")
            ax.set_title("streaming" if stream else "non-streaming")
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer calls per cell")
    args = ap.parse_args()
    print(report(run(args.quick), HERE / "out"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
