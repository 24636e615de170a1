"""Fault injection at the httpx transport: refuse, hang, 503, or break a stream midway,
per engine host, in front of the in-process fake engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from aragog.api.app import create_app
from aragog.api.gateway import Gateway
from aragog.config import parse_config
from tests.fake_engine import FakeEngine, HostRouter

Fault = Literal["refuse", "hang", "hang_body", "503", "break"]

CONFIG: dict[str, Any] = {
    "fleet": {
        "models": [
            {"name": "small", "cost": 1, "engines": [
                {"url": "http://small-a", "served_model_name": "s"},
                {"url": "http://small-b", "served_model_name": "s"},
            ]},
            {"name": "large", "cost": 8, "engines": [{"url": "http://large"}]},
        ]
    },
    "upstream": {"first_byte_timeout_s": 0.3, "idle_timeout_s": 0.3, "read_timeout_s": 0.3,
                 "total_timeout_s": 5},
    "breaker": {"failure_threshold": 2, "cooldown_s": 1.0},
}


class _Broken(httpx.AsyncByteStream):
    """The first ``after`` SSE events of a body, then a dropped connection."""

    def __init__(self, inner: httpx.AsyncByteStream, after: int) -> None:
        self.inner = inner
        self.after = after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = b"".join([c async for c in self.inner])
        events = body.split(b"\n\n")[: self.after]
        for ev in events:
            yield ev + b"\n\n"
            await asyncio.sleep(0)
        raise httpx.RemoteProtocolError("peer closed connection mid-body")

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Hanging(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""  # pragma: no cover


@dataclass
class FaultTransport(httpx.AsyncBaseTransport):
    inner: httpx.AsyncBaseTransport
    faults: dict[str, Fault] = field(default_factory=dict)  # host -> fault on calls
    calls: dict[str, int] = field(default_factory=dict)  # host -> calls seen (not scrapes)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        fault = self.faults.get(host)
        is_call = request.url.path != "/metrics"
        if is_call:
            self.calls[host] = self.calls.get(host, 0) + 1
        if fault == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if fault == "hang" and is_call:
            await asyncio.Event().wait()
        if fault == "503" and is_call:
            return httpx.Response(503, json={"error": {"message": "overloaded"}})
        resp = await self.inner.handle_async_request(request)
        if fault == "hang_body" and is_call:
            return httpx.Response(200, headers=resp.headers, stream=_Hanging())
        if fault == "break" and is_call:
            assert isinstance(resp.stream, httpx.AsyncByteStream)
            # A stream breaks after its first event; a whole answer before any byte.
            after = 1 if "event-stream" in resp.headers.get("content-type", "") else 0
            return httpx.Response(resp.status_code, headers=resp.headers,
                                  stream=_Broken(resp.stream, after))
        return resp


class Env:
    def __init__(self, config: dict[str, Any] | None = None, **app_kw: Any) -> None:
        self.engines = {h: FakeEngine(h) for h in ("small-a", "small-b", "large")}
        self.transport = FaultTransport(httpx.ASGITransport(
            app=HostRouter({h: e.app() for h, e in self.engines.items()})
        ))
        self.now = 1000.0
        self.app = create_app(
            parse_config(config or CONFIG), app_kw.pop("workflows", {}),
            client=httpx.AsyncClient(transport=self.transport), poll=False,
            clock=lambda: self.now, **app_kw,
        )
        self.gw: Gateway = self.app.state.gateway
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gw"
        )

    async def chat(self, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        payload = {"messages": [{"role": "user", "content": "hi"}], **body}
        return await self.client.post("/v1/chat/completions", json=payload, headers=headers)

    def inflight_total(self) -> int:
        return sum(self.gw.inflight.view().values())
