"""A trivial OpenAI-compatible upstream: fixed reply, 16-chunk SSE, and a vLLM-shaped /metrics,
so that what is measured is the gateway, not the engine.

    python benchmarks/gateway_overhead/upstream.py PORT
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

REPLY = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "fast",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "The quick brown fox."},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }
).encode()
CHUNKS = [
    b"data: "
    + json.dumps(
        {
            "id": "cmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fast",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": f"w{i} "},
                    "finish_reason": "stop" if i == 15 else None,
                }
            ],
        }
    ).encode()
    + b"\n\n"
    for i in range(16)
]
USAGE = (
    b"data: "
    + json.dumps(
        {
            "id": "cmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fast",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28},
        }
    ).encode()
    + b"\n\n"
)
METRICS = (
    b'vllm:num_requests_running{engine="0",model_name="fast"} 0.0\n'
    b'vllm:num_requests_waiting{engine="0",model_name="fast"} 0.0\n'
    b'vllm:kv_cache_usage_perc{engine="0",model_name="fast"} 0.0\n'
)


async def completions(request: Request) -> Response:
    body = json.loads(await request.body())
    if not body.get("stream"):
        return Response(REPLY, media_type="application/json")
    usage = (body.get("stream_options") or {}).get("include_usage")

    async def events() -> AsyncIterator[bytes]:
        for chunk in CHUNKS:
            yield chunk
        if usage:
            yield USAGE
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def metrics(_: Request) -> Response:
    return Response(METRICS, media_type="text/plain")


async def models(_: Request) -> Response:
    return Response(
        b'{"object":"list","data":[{"id":"fast","object":"model"}]}', media_type="application/json"
    )


app = Starlette(
    routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/v1/models", models),
    ]
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
