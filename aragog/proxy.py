"""Forwarding to engines: pooled keep-alive connections, SSE relayed event by event."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

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


def upstream_timeouts(cfg: UpstreamConfig) -> tuple[httpx.Timeout, httpx.Timeout]:
    """(non-streamed, streamed) per-read timeouts, built once: for a streamed call a read
    waits at most the idle gap between events; the first event has its own deadline."""
    whole = httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s)
    streamed = httpx.Timeout(cfg.idle_timeout_s, connect=cfg.connect_timeout_s)
    return whole, streamed


async def send(
    client: httpx.AsyncClient,
    engine: EngineRef,
    path: str,
    body: bytes,
    stream: bool,
    timeouts: httpx.Timeout | None = None,
) -> httpx.Response:
    """POST to the engine; transport failures come back as ``UpstreamError``."""
    headers = {"content-type": "application/json"}
    if engine.api_key:
        headers["authorization"] = f"Bearer {engine.api_key}"
    request = client.build_request(
        "POST",
        engine.url + path,
        content=body,
        headers=headers,
        timeout=httpx.USE_CLIENT_DEFAULT if timeouts is None else timeouts,
    )
    try:
        return await client.send(request, stream=stream)
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
    upstream: httpx.Response,
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
