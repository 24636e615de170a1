"""The hot-path HTTP/1.1 client against a scripted raw-socket server (real sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from aragog.http11 import Client

Script = Callable[[bytes], list[bytes | float]]  # request -> reply parts (bytes or a pause)


class Server:
    def __init__(self, script: Script, close_after: bool = False) -> None:
        self.script = script
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                for part in self.script(request):
                    if isinstance(part, float):
                        await asyncio.sleep(part)
                    else:
                        writer.write(part)
                        await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = Client(8)
    yield c
    await c.aclose()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Server], asyncio.Future[str]]]:
    servers: list[asyncio.Server] = []

    async def start(server: Server) -> str:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(srv)
        return f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for srv in servers:
        srv.close()


def whole(body: bytes) -> list[bytes | float]:
    return [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    ]


def chunked(*parts: bytes, gap: float = 0.0) -> list[bytes | float]:
    out: list[bytes | float] = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"
    ]
    for p in parts:
        out += [f"{len(p):x}\r\n".encode() + p + b"\r\n", gap]
    return [*out, b"0\r\n\r\n"]


async def test_keep_alive_reuses_one_connection(serve, client: Client) -> None:  # type: ignore[no-untyped-def]
    server = Server(lambda req: whole(b'{"ok":1}'))
    pool = client.pool(await serve(server))
    for _ in range(5):
        resp = await pool.post("/v1/x", b"{}", b"authorization: Bearer k\r\n", 1, 1)
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        assert await resp.aread() == b'{"ok":1}'
    assert server.connections == 1
    assert b"authorization: Bearer k\r\n" in server.requests[0]
    assert server.requests[0].endswith(b"\r\n\r\n{}")


async def test_streams_chunks_as_they_arrive(serve, client: Client) -> None:  # type: ignore[no-untyped-def]
    server = Server(lambda req: chunked(b"data: a\n\n", b"data: b\n\n", gap=0.05))
    resp = await client.pool(await serve(server)).post("/s", b"{}", b"", 1, 1)
    loop = asyncio.get_running_loop()
    seen = []
    async for chunk in resp.aiter_raw():
        seen.append((chunk, loop.time()))
    assert [c for c, _ in seen] == [b"data: a\n\n", b"data: b\n\n"]
    assert seen[1][1] - seen[0][1] >= 0.04  # not buffered until the end


async def test_peer_closing_idle_connection_is_retried_fresh(serve, client: Client) -> None:  # type: ignore[no-untyped-def]
    server = Server(lambda req: whole(b"1"), close_after=True)
    pool = client.pool(await serve(server))
    assert await (await pool.post("/", b"", b"", 1, 1)).aread() == b"1"
    await asyncio.sleep(0.05)  # the server has closed the kept connection by now
    assert await (await pool.post("/", b"", b"", 1, 1)).aread() == b"1"
    assert server.connections == 2


async def test_timeouts_and_refusal_are_httpx_errors(serve, client: Client) -> None:  # type: ignore[no-untyped-def]
    slow = Server(lambda req: [1.0, *whole(b"late")])
    pool = client.pool(await serve(slow))
    with pytest.raises(httpx.ReadTimeout):
        await pool.post("/", b"", b"", 1, 0.1)
    stall = Server(lambda req: chunked(b"a", b"b", gap=1.0))
    resp = await client.pool(await serve(stall)).post("/", b"", b"", 1, 0.2)
    with pytest.raises(httpx.ReadTimeout):
        await resp.aread()
    with pytest.raises(httpx.ConnectError):
        await client.pool("http://127.0.0.1:1").post("/", b"", b"", 1, 1)


async def test_broken_answers(serve, client: Client) -> None:  # type: ignore[no-untyped-def]
    garbage = Server(lambda req: [b"NOT HTTP AT ALL\r\n\r\n"])
    with pytest.raises(httpx.RemoteProtocolError):
        await client.pool(await serve(garbage)).post("/", b"", b"", 1, 1)
    cut = Server(
        lambda req: [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"], close_after=True
    )
    resp = await client.pool(await serve(cut)).post("/", b"", b"", 1, 1)
    with pytest.raises(httpx.RemoteProtocolError):
        await resp.aread()


async def test_abandoned_stream_is_not_reused(serve, client: Client) -> None:  # type: ignore[no-untyped-def]
    server = Server(lambda req: chunked(b"a", b"b", b"c", gap=0.05))
    pool = client.pool(await serve(server))
    resp = await pool.post("/", b"", b"", 1, 1)
    async for _ in resp.aiter_raw():
        break
    await resp.aclose()
    resp = await pool.post("/", b"", b"", 1, 1)
    assert await resp.aread() == b"abc"
    assert server.connections == 2


def test_works_under_uvloop() -> None:
    """The gateway serves on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def main() -> list[bytes]:
        server = Server(lambda req: whole(b"ok"))
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        client = Client(2)
        try:
            return [await (await client.pool(url).post("/", b"", b"", 1, 1)).aread()
                    for _ in range(3)]
        finally:
            await client.aclose()
            srv.close()
            await srv.wait_closed()

    assert uvloop.run(main()) == [b"ok"] * 3
