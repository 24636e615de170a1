from __future__ import annotations

import asyncio
import importlib.util
import json

import httpx
import numpy as np
import pytest

from aragog.router.embedders import EmbedderError, HashingEmbedder, OpenAIEmbedder


def test_hashing_is_deterministic_and_normalised() -> None:
    e = HashingEmbedder(1024)
    a = e.embed_sync(["What is 2 + 2?", "Name the capital of France."])
    b = HashingEmbedder(1024).embed_sync(["What is 2 + 2?", "Name the capital of France."])
    assert a.shape == (2, 1024) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])
    assert e.id == "hashing-v1-1024"


def test_hashing_rejects_bad_dim() -> None:
    with pytest.raises(ValueError, match="power of two"):
        HashingEmbedder(1000)


@pytest.mark.skipif(importlib.util.find_spec("wordllama") is None, reason="wordllama absent")
def test_wordllama_offline() -> None:
    from aragog.router.embedders import WordLlamaEmbedder

    v = WordLlamaEmbedder().embed_sync(["hello world"])
    assert v.shape == (1, 256)


async def test_openai_embedder_coalesces_concurrent_calls() -> None:
    posts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["input"]
        posts.append(len(texts))
        data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(texts)]
        return httpx.Response(200, json={"data": data[::-1]})  # order restored by index

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        e = OpenAIEmbedder(client, "http://emb", "bge", dim=3, linger_s=0.005)
        out = await asyncio.gather(*(e.embed(["x" * i]) for i in range(1, 6)))
    assert posts == [5]
    assert [round(float(v[0, 0] / v[0, 1]), 3) for v in out] == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_openai_embedder_errors_reach_every_waiter() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        e = OpenAIEmbedder(client, "http://emb", "bge", dim=3)
        results = await asyncio.gather(e.embed(["a"]), e.embed(["b"]), return_exceptions=True)
    assert all(isinstance(r, EmbedderError) for r in results)
