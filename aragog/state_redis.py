"""Request state in Redis, shared by several gateway replicas.

``update`` is an optimistic transaction (WATCH the key, read, apply ``fn``, MULTI/EXEC):
when another replica wrote the key in between, EXEC fails and the whole read-modify-write
runs again on the fresh value, so two replicas never both fix a stage to different models.
``fn`` runs in Python (it is the caller's logic), which rules out a Lua script.

Bounded like the memory store: every key carries the TTL, and a sorted index of keys by
last touch lets us count them and drop the oldest beyond ``max_requests``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from aragog.state import RequestState, Update

_MAX_TRIES = 50  # contention on one request is a handful of sibling calls, not thousands
_TRIM_EVERY = 256  # cap enforcement is amortised over this many updates
_STRIPES = 64  # local locks, so optimistic retries only race other replicas


def encode(st: RequestState) -> bytes:
    return orjson.dumps(
        {
            "w": st.workflow,
            "r": st.request_id,
            "a": st.arrival,
            "c": dict(st.chosen),
            "d": dict(st.done),
            "v": None if st.viable is None else sorted(st.viable),
            "n": st.calls,
        }
    )


def decode(raw: bytes | str) -> RequestState:
    d: dict[str, Any] = orjson.loads(raw)
    viable = d["v"]
    return RequestState(
        workflow=d["w"],
        request_id=d["r"],
        arrival=d["a"],
        chosen=MappingProxyType(d["c"]),
        done=MappingProxyType(d["d"]),
        viable=None if viable is None else frozenset(tuple(c) for c in viable),
        calls=d["n"],
    )


class StoreContention(RuntimeError):
    """An update lost the race ``_MAX_TRIES`` times in a row."""


class RedisStore:
    def __init__(
        self,
        url: str,
        ttl_s: float,
        max_requests: int,
        prefix: str = "aragog",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = aioredis.from_url(url)
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._ttl_s = ttl_s
        self._cap = max_requests
        self._prefix = prefix
        self._index = f"{prefix}:index"
        self._clock = clock  # wall clock: the index is shared across machines
        self._count = 0
        self._updates = 0
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]

    def __len__(self) -> int:
        """Requests held, as of this replica's last update (the gauge needs no round trip)."""
        return self._count

    def _key(self, workflow: str, request_id: str) -> str:
        return f"{self._prefix}:req:{workflow}:{request_id}"

    async def get(self, workflow: str, request_id: str) -> RequestState | None:
        raw = await self._redis.get(self._key(workflow, request_id))
        return None if raw is None else decode(raw)

    async def update(self, workflow: str, request_id: str, fn: Update) -> RequestState:
        key = self._key(workflow, request_id)
        async with self._locks[hash(key) % _STRIPES]:
            return await self._update(key, workflow, request_id, fn)

    async def _update(self, key: str, workflow: str, request_id: str, fn: Update) -> RequestState:
        async with self._redis.pipeline(transaction=True) as pipe:
            for attempt in range(_MAX_TRIES):
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    new = fn(None if raw is None else decode(raw))
                    now = self._clock()
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, encode(new), px=self._ttl_ms)
                    pipe.zadd(self._index, {key: now})
                    pipe.zremrangebyscore(self._index, "-inf", now - self._ttl_s)
                    pipe.zcard(self._index)
                    result = await pipe.execute()
                except WatchError:  # another replica wrote it: back off a little, read again
                    await asyncio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 10)))
                    continue
                self._count = int(result[-1])
                self._updates += 1
                if self._count > self._cap and self._updates % _TRIM_EVERY == 0:
                    await self._trim()
                return new
        raise StoreContention(f"request state {workflow}/{request_id}: too much contention")

    async def _trim(self) -> None:
        """Drop the least recently touched requests beyond the cap."""
        excess = self._count - self._cap
        if excess <= 0:
            return
        victims = await self._redis.zpopmin(self._index, excess)
        keys = [v[0] for v in victims if isinstance(v, tuple | list)]
        if keys:
            await self._redis.delete(*keys)
        self._count = int(await self._redis.zcard(self._index))

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()
