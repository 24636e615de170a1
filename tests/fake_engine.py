"""A small in-process stand-in for a vLLM engine, for integration tests of content and error
paths (the end-to-end tests use real vLLM)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeEngine:
    model: str
    running: int = 0
    waiting: int = 0
    kv: float = 0.1
    fail_metrics: bool = False
    status: int = 200
    seen: list[dict[str, Any]] = field(default_factory=list)

    def metrics_text(self) -> str:
        m = self.model
        return (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{engine="0",model_name="{m}"}} {self.running}.0\n'
            f'vllm:num_requests_waiting{{engine="0",model_name="{m}"}} {self.waiting}.0\n'
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="{m}"}} {self.kv}\n'
            f'vllm:prompt_tokens_total{{engine="0",model_name="{m}"}} 10.0\n'
        )

    def app(self) -> Starlette:
        async def metrics(_: Request) -> Response:
            if self.fail_metrics:
                return PlainTextResponse("boom", status_code=500)
            return PlainTextResponse(self.metrics_text())

        async def chat(request: Request) -> Response:
            body = json.loads(await request.body())
            self.seen.append(body)
            if self.status != 200:
                err = {"error": {"message": "engine says no", "type": "BadRequestError",
                                 "code": self.status}}
                return JSONResponse(err, status_code=self.status)
            if body.get("stream"):
                return StreamingResponse(self._stream(body), media_type="text/event-stream")
            return JSONResponse({
                "id": "cmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            })

        async def embeddings(request: Request) -> Response:
            body = json.loads(await request.body())
            self.seen.append(body)
            return JSONResponse({
                "object": "list", "model": body["model"],
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            })

        return Starlette(routes=[
            Route("/metrics", metrics),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ])

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        for i, word in enumerate(["a", "b", "c"]):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": word},
                                  "finish_reason": "stop" if i == 2 else None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "c", "object": "chat.completion.chunk", "model": body["model"],
                     "choices": [],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"


class HostRouter:
    """An ASGI app dispatching on the Host header, so one httpx transport fronts many fakes."""

    def __init__(self, apps: dict[str, Starlette]) -> None:
        self.apps = apps

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        host = dict(scope["headers"]).get(b"host", b"").decode()
        await self.apps[host](scope, receive, send)
