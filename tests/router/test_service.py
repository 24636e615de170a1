from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from aragog.router.artifact import Artifact, ArtifactError
from aragog.router.embedders import HashingEmbedder, Vectors
from aragog.router.service import Router
from tests.router.conftest import cascade_spec


async def test_route_returns_closed_set_with_cmax(trained: tuple[Artifact, Path]) -> None:
    art, path = trained
    router = Router.load(path, cascade_spec(), HashingEmbedder(256))
    res = await router.route("easy sum question 7")
    assert not res.fallback and res.reason is None
    assert ("l", "l", "l") in res.viable
    configs = list(cascade_spec().configurations())
    assert art.closable is not None and not all(art.closable)  # the toy has a bad one
    for c in res.viable:  # upward closed, except into configurations below the target
        for d in configs:
            if all("sml".index(a) <= "sml".index(b) for a, b in zip(c, d, strict=True)):
                assert d in res.viable or not art.closable[configs.index(d)]
    assert res.latency_s < 0.05


async def test_easy_inputs_get_more_room(trained: tuple[Artifact, Path]) -> None:
    _, path = trained
    router = Router.load(path, cascade_spec(), HashingEmbedder(256))
    easy = await router.route("easy sum question 1001")
    hard = await router.route("hard tricky proof question 1002")
    assert len(easy.viable) >= len(hard.viable)


@pytest.mark.parametrize(
    ("spec_name", "dim", "match"),
    [("other", 256, "trained for 'cascade-toy'"), ("cascade-toy", 512, "embedder")],
)
def test_load_rejects_mismatch(
    trained: tuple[Artifact, Path], spec_name: str, dim: int, match: str
) -> None:
    with pytest.raises(ArtifactError, match=match):
        Router.load(trained[1], cascade_spec(spec_name), HashingEmbedder(dim))


def test_load_rejects_changed_workflow(trained: tuple[Artifact, Path]) -> None:
    spec = cascade_spec().model_copy(update={"edges": [("solver_a", "judge")]})
    with pytest.raises(ArtifactError, match="changed since training"):
        Router.load(trained[1], spec, HashingEmbedder(256))


def test_load_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"nope")
    with pytest.raises(ArtifactError, match="not a router artifact"):
        Router.load(tmp_path / "x.npz", cascade_spec(), HashingEmbedder(256))


class SlowEmbedder(HashingEmbedder):
    async def embed(self, texts: Sequence[str]) -> Vectors:
        await asyncio.sleep(1.0)
        return self.embed_sync(texts)


class BrokenEmbedder(HashingEmbedder):
    async def embed(self, texts: Sequence[str]) -> Vectors:
        return np.full((len(texts), self.dim), np.nan, np.float32)


@pytest.mark.parametrize(
    ("embedder", "reason"),
    [(SlowEmbedder(256), "timeout"), (BrokenEmbedder(256), "error: ValueError")],
)
async def test_fallback(
    trained: tuple[Artifact, Path], embedder: HashingEmbedder, reason: str
) -> None:
    router = Router.load(trained[1], cascade_spec(), embedder, budget_s=0.02)
    res = await router.route("anything")
    assert res.fallback and res.reason is not None and res.reason.startswith(reason)
    assert res.viable == router.fallback_set
    assert ("l", "l", "l") in res.viable
    assert res.latency_s < 0.5
