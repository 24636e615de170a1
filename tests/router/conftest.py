"""Shared fixtures: a small synthetic cascade (labelled SYNTHETIC) trained in a second."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from aragog.router.artifact import Artifact
from aragog.router.embedders import HashingEmbedder
from aragog.router.labels import LabelRow, LabelSet
from aragog.router.mlp import TrainParams
from aragog.router.rules import CascadeRule
from aragog.router.train import TrainOptions, train_router
from aragog.workflow.spec import StageSpec, WorkflowSpec

COST = {"s": 1.0, "m": 4.0, "l": 16.0}
MODELS = ["s", "m", "l"]


def cascade_spec(name: str = "cascade-toy") -> WorkflowSpec:
    return WorkflowSpec(
        name=name,
        stages=[StageSpec(name=n, models=MODELS) for n in ("solver_a", "solver_b", "judge")],
        edges=[("solver_a", "judge"), ("solver_b", "judge")],
    )


def toy_labels(n: int = 400, seed: int = 0) -> LabelSet:
    """Easy questions (word 'easy') every model gets right; hard ones only 'l' reliably."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hard = rng.random() < 0.5
        p = {"s": 0.2, "m": 0.5, "l": 0.9} if hard else {"s": 0.95, "m": 0.97, "l": 0.98}
        ok = {m: bool(rng.random() < p[m]) for m in MODELS}
        ans = {m: "42" if ok[m] else str(rng.integers(0, 5)) for m in MODELS}
        text = f"{'hard tricky proof' if hard else 'easy sum'} question {i}"
        rows.append(LabelRow(f"q{i}", text, answers=ans, correct=ok))
    rule = CascadeRule(("solver_a", "solver_b"), "judge")
    return LabelSet("cascade-toy", "SYNTHETIC toy", True, tuple(MODELS), rule, None, tuple(rows))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifact, Path]:
    opts = TrainOptions(folds=2, params=TrainParams(hidden=16, max_epochs=8))
    art, _ = asyncio.run(
        train_router(toy_labels(), cascade_spec(), COST, HashingEmbedder(256), opts)
    )
    path = tmp_path_factory.mktemp("router") / "toy.npz"
    art.save(path)
    return art, path
