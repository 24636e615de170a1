"""Real-data workflows for the simulator: the spec, the recorded answers of the held-out
split, and each question's C(r) from the real router (``Router.decide`` on the trained
artifact; the embedding is computed once per question, as the gateway does per request)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import yaml

from aragog.config import load_config
from aragog.router.builders import BUILDERS, CASCADE_RULE, VOTING_RULE
from aragog.router.embedders import make_embedder
from aragog.router.labels import outcomes, split_masks
from aragog.router.service import Router
from aragog.router.train import TrainOptions, clip, train_router
from aragog.sim.experiments import WorkflowData
from aragog.sim.fleet import Placement
from aragog.sim.workload import output_lengths, questions
from aragog.workflow.spec import Configuration, WorkflowSpec

# The paper's 8-GPU server: small model on 1 GPU, medium on 2, large on 4. The paper's
# router embeds on the eighth GPU; ours (hashing embedder, numpy MLP) runs on the gateway's
# CPU in 0.1-0.2 ms, so every policy gets the eighth GPU as a second small replica, and the
# paper's split (Aragog on seven serving GPUs) is an ablation.
LAYOUTS: dict[str, tuple[str, str, str]] = {
    "voting-mmlu": ("phi-3-mini", "llama-3.1-8b", "llama-3.1-70b"),
    "cascade-gsm8k": ("gemma-2-2b", "gemma-2-9b", "gemma-2-27b"),
    "cascade-math": ("qwen2.5-3b", "qwen2.5-7b", "qwen2.5-32b"),
}


def paper_layout(workflow: str, router_gpu: bool = False) -> tuple[Placement, ...]:
    small, medium, large = LAYOUTS[workflow]
    return (
        Placement(small, 1, 1 if router_gpu else 2),
        Placement(medium, 2),
        Placement(large, 4),
    )


def four_gpu_layout(workflow: str) -> tuple[Placement, ...]:
    """Half the server: small and medium on one GPU each, large on two (a 70B model does
    not fit two H100s in bf16, so only the cascades have this ablation)."""
    small, medium, large = LAYOUTS[workflow]
    return (Placement(small, 1), Placement(medium, 1), Placement(large, 2))


def load_workflow(
    name: str,
    root: Path,
    data_dir: Path,
    artifact_dir: Path,
    seed: int = 0,
    oracle: bool = False,
    two_models: bool = False,
) -> WorkflowData:
    """``oracle``: C(r) is each question's true viable set from its recorded outcomes
    (correct wherever c_max is), the router's upper bound; it reads held-out labels, so
    it is an ablation of how much flexibility the scheduler can use, never a result.
    ``two_models``: the constrained configuration space, where each stage may only use its
    cheapest or its most expensive candidate (C(r) cut to it; c_max stays)."""
    cfg = load_config(root / "configs" / "sim-h100.yaml")
    cost = {m.name: m.cost for m in cfg.fleet.models}
    spec = WorkflowSpec.model_validate(
        yaml.safe_load((root / "workflows" / f"{name}.yaml").read_text())
    )
    labels = BUILDERS[name].build(data_dir)
    embedder = make_embedder("hashing")
    path = artifact_dir / f"{name}.hashing.npz"
    if not path.exists():  # train as benchmarks/router/run.py does (same seed, same split)
        art, _ = asyncio.run(train_router(labels, spec, cost, embedder, TrainOptions(seed=seed)))
        path.parent.mkdir(parents=True, exist_ok=True)
        art.save(path)
    router = Router.load(path, spec, embedder)
    test = split_masks((r.id for r in labels.rows), seed)["test"]
    texts = [clip(r.text) for r, t in zip(labels.rows, test, strict=True) if t]
    vecs = asyncio.run(embedder.embed(texts))
    viable: list[frozenset[Configuration]] = [frozenset()] * len(labels.rows)
    if oracle:
        out = outcomes(labels, spec, cost)
        for i in np.flatnonzero(test):
            row = out.viable[int(i)]
            viable[int(i)] = frozenset(c for c, ok in zip(out.configs, row, strict=True) if ok)
    else:
        for i, v in zip(np.flatnonzero(test), vecs, strict=True):
            viable[int(i)] = router.decide(v[None, :])
    if two_models:
        ends = [{min(s.models, key=cost.__getitem__), max(s.models, key=cost.__getitem__)}
                for s in spec.stages]  # fmt: skip
        c_max = spec.largest(cost)
        viable = [
            frozenset(c for c in v if all(m in e for m, e in zip(c, ends, strict=True))) | {c_max}
            for v in viable
        ]
    qs = questions(labels, output_lengths(data_dir, name), viable, list(test))
    art_static = router._art.info.get("static_config")  # calibrated at training time
    configs = router._art.configurations
    static = configs[int(art_static)] if art_static is not None else spec.largest(cost)
    rule = VOTING_RULE if name == "voting-mmlu" else CASCADE_RULE
    return WorkflowData(
        spec=spec,
        rule=rule,
        cost=cost,
        questions=qs,
        static=dict(zip(spec.stage_names, static, strict=True)),
        layout=paper_layout(name),
        router_gpu_layout=paper_layout(name, router_gpu=True),
    )
