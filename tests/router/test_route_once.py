"""Integration: tagged calls through a gateway-shaped ASGI app get C(r) computed once per
request, on the request's first call, while later calls reuse it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aragog.api.tagging import extract_tags
from aragog.router.artifact import Artifact
from aragog.router.embedders import HashingEmbedder, Vectors
from aragog.router.once import OncePerRequest
from aragog.router.service import Router
from tests.router.conftest import cascade_spec


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(256)
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        await asyncio.sleep(0.005)  # long enough for concurrent calls to overlap
        return self.embed_sync(texts)


def gateway(router: Router, once: OncePerRequest) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        tags = extract_tags(request.headers, body)
        assert tags.request_id is not None and tags.stage is not None
        text = body["messages"][-1]["content"]
        result = await once.start(router, tags.request_id, text)
        stage = cascade_spec().stage_names.index(tags.stage)
        models = sorted({c[stage] for c in result.viable})
        return JSONResponse({"stage": tags.stage, "models": models, "n": len(result.viable)})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def test_one_route_per_request(trained: tuple[Artifact, Path]) -> None:
    embedder = CountingEmbedder()
    router = Router.load(trained[1], cascade_spec(), embedder)
    once = OncePerRequest()
    transport = httpx.ASGITransport(app=gateway(router, once))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:

        async def call(req: str, stage: str) -> dict[str, object]:
            headers = {
                "x-aragog-workflow": "cascade-toy",
                "x-aragog-request-id": req,
                "x-aragog-stage": stage,
            }
            body = {"model": "x", "messages": [{"role": "user", "content": f"easy sum {req}"}]}
            r = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 200
            out: dict[str, object] = r.json()
            return out

        # both solvers of 3 requests arrive together, then each request's judge
        first = await asyncio.gather(
            *(call(f"r{i}", s) for i in range(3) for s in ("solver_a", "solver_b"))
        )
        judges = await asyncio.gather(*(call(f"r{i}", "judge") for i in range(3)))
    assert embedder.calls == 3
    assert len(once) == 3
    for r in (*first, *judges):
        assert isinstance(r["models"], list) and "l" in r["models"]
