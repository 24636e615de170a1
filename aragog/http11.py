"""A small keep-alive HTTP/1.1 client for the hot path to engines.

General clients pay per request for generality: httpcore's pool checks every pooled
connection's socket for readability on each request, which profiling showed to be most of
the gateway's own CPU time. Engines are a handful of known hosts spoken to with one kind of
request, so this client keeps, per engine, a LIFO stack of idle connections (the most
recently used is the warmest and the least likely to have been closed by the peer) and
parses answers with httptools, the C parser uvicorn uses.

Failures are raised as httpx's exception types, so callers handle one exception tree
whichever client served the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx

# Past this much unread body, stop reading the socket until the relay catches up, so a slow
# client slows the engine's stream instead of the gateway buffering it.
_HIGH_WATER = 64 * 1024


class _Conn(asyncio.Protocol):
    """One connection; answers one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        loop = asyncio.get_running_loop()
        self.headers_ready: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: dict[str, str] = {}
        self._name = b""
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    def prepare(self) -> None:
        self._reset()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(httpx.RemoteProtocolError(f"bad answer from engine: {err}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(httpx.RemoteProtocolError("engine closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, err: Exception) -> None:
        if self.error is None:
            self.error = err
        if not self.headers_ready.done():
            self.headers_ready.set_exception(err)
            self.headers_ready.exception()  # retrieved: no "never retrieved" warning
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next_chunk(self, idle_s: float | None) -> bytes | None:
        """The next piece of body, or None at its end."""
        while not self.body:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(idle_s):
                    await self.waiter
            except TimeoutError:
                raise httpx.ReadTimeout("engine went quiet") from None
            finally:
                self.waiter = None
        chunk = self.body.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < _HIGH_WATER // 2 and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False
        return chunk


class Response:
    """An engine's answer: status and headers at once, the body read or iterated later."""

    def __init__(self, pool: Pool, conn: _Conn, read_timeout: float | None) -> None:
        self._pool = pool
        self._conn = conn
        self._timeout = read_timeout
        self._done = False
        self.status_code = conn.status
        self.headers = conn.headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            while (chunk := await self._conn.next_chunk(self._timeout)) is not None:
                yield chunk
        finally:  # read to the end: pooled; failed or abandoned: closed
            await self.aclose()

    async def aread(self) -> bytes:
        return b"".join([c async for c in self.aiter_raw()])

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        self._pool.give_back(self._conn)


class Pool:
    """Keep-alive connections to one engine."""

    def __init__(self, url: str, max_idle: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"the fast client speaks plain http only, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self._authority = f"{self.host}:{self.port}".encode()
        self._idle: list[_Conn] = []
        self._max_idle = max_idle

    async def _connect(self, limit_s: float | None) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit_s):
                _, conn = await loop.create_connection(_Conn, self.host, self.port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as err:
            raise httpx.ConnectError(f"connect to {self.host}:{self.port}: {err}") from None
        return conn

    def _checkout(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    def give_back(self, conn: _Conn) -> None:
        """Reuse only a connection whose answer was read to its end and may be kept."""
        reusable = conn.complete and conn.keep_alive and not conn.closed and not conn.paused
        if reusable and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    async def post(
        self,
        path: str,
        body: bytes,
        headers: bytes,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> Response:
        """POST and wait for the answer's status line and headers. ``headers`` is extra
        pre-encoded header lines, each ending in CRLF."""
        head = (
            b"POST " + path.encode() + b" HTTP/1.1\r\nhost: " + self._authority
            + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n" + headers + b"\r\n"
        )  # fmt: skip
        conn = self._checkout()
        # A pooled connection the engine closed while idle fails on first use; that one
        # failure is retried once on a fresh connection, as browsers and httpx do.
        for fresh in (False, True) if conn is not None else (True,):
            if fresh:
                conn = await self._connect(connect_timeout)
            assert conn is not None and conn.transport is not None
            conn.prepare()
            conn.transport.write(head + body)
            try:
                async with asyncio.timeout(read_timeout):
                    await conn.headers_ready
            except TimeoutError:
                conn.transport.close()
                raise httpx.ReadTimeout("engine sent no answer in time") from None
            except httpx.RemoteProtocolError:
                conn.transport.close()
                if fresh:
                    raise
                continue
            except BaseException:
                conn.transport.close()  # cancelled mid-request: the connection is spent
                raise
            return Response(self, conn, read_timeout)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


class Client:
    """One pool per engine URL, made on first use."""

    def __init__(self, max_idle_per_engine: int) -> None:
        self._pools: dict[str, Pool] = {}
        self._max_idle = max_idle_per_engine

    def pool(self, url: str) -> Pool:
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = Pool(url, self._max_idle)
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)  # let transports run their close callbacks
