"""Router benchmark: train on each real-data workflow, evaluate on the held-out split,
measure route latency on this CPU (one core), write out/results.md and out/results.png.

    .venv/bin/python benchmarks/router/run.py [--embedder hashing|wordllama] [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # "one core": no BLAS thread pool
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
import yaml

from aragog.config import load_config
from aragog.router.builders import BUILDERS, default_data_dir
from aragog.router.cli import write_report
from aragog.router.embedders import make_embedder
from aragog.router.evaluate import EvalReport, evaluate, markdown
from aragog.router.service import Router
from aragog.router.train import TrainOptions, train_router
from aragog.workflow.spec import WorkflowSpec

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "out"


async def latency(router: Router, texts: list[str], n: int) -> tuple[float, float, float]:
    """p50, p99 (ms) of ``route`` and routes/s, sequential on one event loop."""
    for t in texts[:50]:
        await router.route(t)
    lat = []
    start = time.perf_counter()
    for i in range(n):
        res = await router.route(texts[i % len(texts)])
        assert not res.fallback, res.reason
        lat.append(res.latency_s)
    wall = time.perf_counter() - start
    ms = np.array(lat) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), n / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="hashing")
    ap.add_argument("--routes", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = load_config(ROOT / "configs" / "sim-h100.yaml")
    cost = {m.name: m.cost for m in cfg.fleet.models}
    embedder = make_embedder(args.embedder)
    reports: list[EvalReport] = []
    lat_lines = [
        "| workflow | embedder | p50 ms | p99 ms | routes/s (1 core) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, builder in BUILDERS.items():
        spec = WorkflowSpec.model_validate(
            yaml.safe_load((ROOT / "workflows" / f"{name}.yaml").read_text())
        )
        labels = builder.build(default_data_dir())
        opts = TrainOptions(seed=args.seed, progress=True)
        art, prep = asyncio.run(train_router(labels, spec, cost, embedder, opts))
        path = OUT / f"{name}.{args.embedder.replace(':', '-')}.npz"
        art.save(path)
        reports.append(evaluate(art, prep, args.seed, progress=True))
        router = Router.load(path, spec, embedder)
        texts = [r.text for r, t in zip(labels.rows, prep.masks["test"], strict=True) if t]
        p50, p99, rps = asyncio.run(latency(router, texts, args.routes))
        lat_lines.append(f"| {name} | {embedder.id} | {p50:.3f} | {p99:.3f} | {rps:,.0f} |")
        print(f"{name}: threshold {art.threshold:.3f}, artifact {path.stat().st_size / 1e6:.2f} MB")
    stem = f"results-{args.embedder.replace(':', '-')}"
    write_report(reports, OUT, stem)
    text = markdown(reports) + "\n" + "\n".join(lat_lines) + "\n"
    (OUT / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
