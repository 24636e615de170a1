"""A small keep-alive HTTP/1.1 load generator on raw asyncio streams.

A general-purpose client (httpx, aiohttp) costs more CPU per request than the gateway under
test; on 2 shared cores that would measure the client. This one does only what the
benchmark needs: POST a fixed body, read a Content-Length or chunked answer, time it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    ttfb: float  # seconds to the first body byte
    total: float  # seconds to the end of the answer
    status: int


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> Sample:
        start = time.perf_counter()
        self.writer.write(request)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked = -1, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            await self.reader.readexactly(length)
            now = time.perf_counter()
            return Sample(now - start, now - start, status)
        ttfb = 0.0
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if not ttfb:
                ttfb = time.perf_counter() - start
            await self.reader.readexactly(size + 2)
            if size == 0:
                return Sample(ttfb, time.perf_counter() - start, status)

    def close(self) -> None:
        self.writer.close()


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def closed_loop(
    host: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    duration_s: float | None,
) -> tuple[list[Sample], float]:
    """``concurrency`` connections, each sending back to back. With ``duration_s`` every
    connection cycles through its requests until time is up; else each sends its share once.
    Returns the samples and the wall time they took."""
    conns = [await Conn.open(host, port) for _ in range(concurrency)]
    samples: list[Sample] = []
    deadline = None if duration_s is None else time.perf_counter() + duration_s

    async def worker(i: int) -> None:
        k = i
        while True:
            if deadline is None and k >= len(requests):
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            samples.append(await conns[i].call(requests[k % len(requests)]))
            k += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall = time.perf_counter() - start
    for c in conns:
        c.close()
    return samples, wall
