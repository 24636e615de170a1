"""Forwarding to engines: pooled keep-alive connections, SSE relayed event by event."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from aragog import http11
from aragog.config import UpstreamConfig
from aragog.fleet.snapshot import EngineRef
from aragog.retry import Failure


class UpstreamError(Exception):
    """The engine could not be reached or did not answer in time (no bytes were relayed)."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure

    @property
    def timeout(self) -> bool:
        return self.failure is Failure.TIMEOUT


def classify(err: httpx.HTTPError) -> Failure:
    if isinstance(err, httpx.TimeoutException):
        return Failure.TIMEOUT
    if isinstance(err, httpx.ConnectError):
        return Failure.REFUSED
    return Failure.BROKEN


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


def make_client(cfg: UpstreamConfig, engines: int) -> httpx.AsyncClient:
    per_engine = cfg.max_connections_per_engine
    return httpx.AsyncClient(
        timeout=httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=per_engine * max(engines, 1),
            max_keepalive_connections=per_engine * max(engines, 1),
        ),
        # Engines live on private addresses; proxies from the environment would only hurt.
        trust_env=False,
    )


class UpstreamResponse(Protocol):
    """What the relay needs of an engine's answer (an ``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def aread(self) -> bytes: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    """The one-method seam between the gateway and its engines. Implementations raise
    httpx's exception types, so callers handle one exception tree."""

    async def post(
        self, engine: EngineRef, path: str, body: bytes, stream: bool
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class HttpxUpstream:
    """Through an ``httpx.AsyncClient``: any transport (tests use in-process fakes), TLS.

    Timeouts, built once: a whole answer may take ``read_timeout_s`` per read; for a stream a
    read waits at most the idle gap between events (the first event has its own deadline,
    kept by the caller)."""

    def __init__(self, client: httpx.AsyncClient, cfg: UpstreamConfig) -> None:
        self._client = client
        self._timeouts = (
            httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s),
            httpx.Timeout(cfg.idle_timeout_s, connect=cfg.connect_timeout_s),
        )

    async def post(
        self, engine: EngineRef, path: str, body: bytes, stream: bool
    ) -> UpstreamResponse:
        headers = {"content-type": "application/json"}
        if engine.api_key:
            headers["authorization"] = f"Bearer {engine.api_key}"
        request = self._client.build_request(
            "POST", engine.url + path, content=body, headers=headers,
            timeout=self._timeouts[stream],
        )  # fmt: skip
        return await self._client.send(request, stream=stream)

    async def aclose(self) -> None:
        return None  # the client is its creator's to close (it also serves the poller)


class FastUpstream:
    """Plain-http engines through ``aragog.http11`` (the hot path); others through httpx."""

    def __init__(self, cfg: UpstreamConfig, tls: HttpxUpstream) -> None:
        self._client = http11.Client(cfg.max_connections_per_engine)
        self._tls = tls
        self._connect_s = cfg.connect_timeout_s
        self._read_s = (cfg.read_timeout_s, cfg.idle_timeout_s)
        self._auth: dict[str, bytes] = {}

    async def post(
        self, engine: EngineRef, path: str, body: bytes, stream: bool
    ) -> UpstreamResponse:
        if not engine.url.startswith("http://"):
            return await self._tls.post(engine, path, body, stream)
        auth = self._auth.get(engine.engine_id)
        if auth is None:
            key = engine.api_key
            auth = f"authorization: Bearer {key}\r\n".encode() if key else b""
            self._auth[engine.engine_id] = auth
        pool = self._client.pool(engine.url)
        return await pool.post(path, body, auth, self._connect_s, self._read_s[stream])

    async def aclose(self) -> None:
        await self._client.aclose()


async def send(
    upstream: Upstream, engine: EngineRef, path: str, body: bytes, stream: bool
) -> UpstreamResponse:
    """POST to the engine; transport failures come back as ``UpstreamError``."""
    try:
        return await upstream.post(engine, path, body, stream)
    except httpx.HTTPError as err:
        failure = classify(err)
        what = "timed out" if failure is Failure.TIMEOUT else f"unreachable ({type(err).__name__})"
        raise UpstreamError(f"engine {engine.engine_id} {what}", failure) from err


def usage_from(obj: Any) -> Usage | None:
    u = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(u, dict):
        return None
    prompt, completion = u.get("prompt_tokens"), u.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt, completion)


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete SSE events (each with its blank-line terminator) and the unfinished rest."""
    events = []
    start = 0
    while (end := buffer.find(b"\n\n", start)) >= 0:
        events.append(buffer[start : end + 2])
        start = end + 2
    return events, buffer[start:]


def usage_event(event: bytes) -> Usage | None:
    """Usage of a usage-only chunk (``choices: []`` plus ``usage``), else None. Cheap for
    ordinary chunks: only events that mention a usage object are decoded."""
    if b'"usage":{' not in event and b'"usage": {' not in event:
        return None
    payload = event.strip()
    if not payload.startswith(b"data:"):
        return None
    try:
        obj = orjson.loads(payload[5:].strip())
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("choices"):
        return None
    return usage_from(obj)


async def relay_sse(
    upstream: UpstreamResponse,
    strip_usage: bool,
    on_first: Callable[[], None],
    on_usage: Callable[[Usage], None],
) -> AsyncGenerator[bytes, None]:
    """Relay SSE as it arrives, whole events at a time; capture usage, and drop the usage
    chunk when the gateway asked for it on the client's behalf."""
    rest = b""
    first = True
    async for chunk in upstream.aiter_raw():
        events, rest = split_events(rest + chunk)
        if not events:
            continue
        out = []
        for ev in events:
            usage = usage_event(ev)
            if usage is not None:
                on_usage(usage)
                if strip_usage:
                    continue
            out.append(ev)
        if out:
            if first:
                on_first()
                first = False
            yield b"".join(out)
    if rest.strip():
        yield rest
