"""Client API keys and per-key rate limits, as a pure ASGI middleware in front of the app.

Only installed when keys are configured, so an open gateway pays nothing. Keys are kept
as SHA-256 digests and compared with ``hmac.compare_digest`` against every configured key
(no early exit), so neither the key's content nor its length shows in the timing. No key,
presented or configured, is ever logged or echoed in a response.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from aragog.config import AuthConfig
from aragog.telemetry import Metrics


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``tokens`` available as of ``stamp``."""

    tokens: float
    stamp: float


def take(b: Bucket, now: float, rate: float, burst: int) -> tuple[Bucket, float]:
    """Spend one token. Returns the new bucket and 0.0 when allowed, else the seconds
    until a token is due (the bucket is then returned refilled but not spent)."""
    tokens = min(float(burst), b.tokens + (now - b.stamp) * rate)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate


def _error(message: str, code: str, type_: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


_MISSING = _error(
    "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
    "missing_api_key",
    "invalid_request_error",
)
_INVALID = _error("Incorrect API key provided.", "invalid_api_key", "invalid_request_error")
_LIMITED = _error("Rate limit reached for this API key.", "rate_limit_exceeded", "requests")


class _Key:
    __slots__ = ("bucket", "burst", "digest", "name", "rate")

    def __init__(self, name: str, secret: str, rate: float | None, burst: int | None) -> None:
        self.name = name
        self.digest = hashlib.sha256(secret.encode()).digest()
        self.rate = rate
        self.burst = burst or max(1, math.ceil(rate or 1.0))
        self.bucket = Bucket(float(self.burst), -math.inf)


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        cfg: AuthConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._keys = [
            _Key(k.name, k.key.get_secret_value(), k.rate_per_s, k.burst) for k in cfg.keys
        ]
        self._open = {"/health"}
        if not cfg.protect_metrics:
            self._open.add("/metrics")
        if not cfg.protect_status:
            self._open |= {"/ready", "/status", "/status.json"}
        self._metrics = metrics
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope["headers"])
        if presented is None:
            await self._refuse(send, 401, _MISSING, "missing")
            return
        key = self._match(presented)
        if key is None:
            await self._refuse(send, 401, _INVALID, "invalid")
            return
        if key.rate is not None:
            key.bucket, wait = take(key.bucket, self._clock(), key.rate, key.burst)
            if wait > 0.0:
                retry = str(max(1, math.ceil(wait))).encode()
                await self._refuse(send, 429, _LIMITED, "rate_limited", retry)
                return
        await self.app(scope, receive, send)

    def _match(self, presented: bytes) -> _Key | None:
        digest = hashlib.sha256(presented).digest()
        found = None
        for key in self._keys:  # all of them, always: the timing must not depend on which
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    async def _refuse(
        self, send: Send, status: int, body: bytes, reason: str, retry: bytes | None = None
    ) -> None:
        self._metrics.auth_rejected.labels(reason).inc()
        headers = [(b"content-type", b"application/json")]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="aragog"'))
        if retry is not None:
            headers.append((b"retry-after", retry))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else b""
    return None
