"""Fake engines whose answers depend on the model and the prompt, for executor and
profiling tests (the shared FakeEngine always says "hi")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

Reply = Callable[[str, str], str]  # (model, last user message) -> answer text


@dataclass
class ScriptedEngine:
    model: str
    reply: Reply
    delay_s: float = 0.0
    status: int = 200
    seen: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    peak: int = 0  # most calls in flight at once: parallel stages must overlap

    def app(self) -> Starlette:
        async def metrics(_: Request) -> Response:
            m = self.model
            return PlainTextResponse(
                f'vllm:num_requests_running{{engine="0",model_name="{m}"}} 0.0\n'
                f'vllm:num_requests_waiting{{engine="0",model_name="{m}"}} 0.0\n'
                f'vllm:kv_cache_usage_perc{{engine="0",model_name="{m}"}} 0.1\n'
            )

        async def chat(request: Request) -> Response:
            body = json.loads(await request.body())
            self.seen.append(body)
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.active -= 1
            if self.status != 200:
                err = {"error": {"message": "boom", "type": "InternalError", "code": 500}}
                return JSONResponse(err, status_code=self.status)
            text = self.reply(self.model, body["messages"][-1]["content"])
            return JSONResponse({
                "id": "c", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
            })

        return Starlette(routes=[
            Route("/metrics", metrics),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ])


def fleet_config(hosts: dict[str, str], **extra: Any) -> dict[str, Any]:
    """Gateway config for models small (cost 1) and large (cost 8) at the given base URLs."""
    return {
        "fleet": {"models": [
            {"name": "small", "cost": 1, "engines": [{"url": hosts["small"]}]},
            {"name": "large", "cost": 8, "engines": [{"url": hosts["large"]}]},
        ]},
        **extra,
    }
