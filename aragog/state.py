"""Per-request workflow state behind a small async interface.

The interface is async and update-shaped (read-modify-write in one call) so a shared
backend such as Redis can implement it atomically for several gateway replicas.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol

from aragog.workflow.spec import Configuration


@dataclass(frozen=True, slots=True)
class RequestState:
    workflow: str
    request_id: str
    arrival: float  # wall-clock seconds
    chosen: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    done: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    viable: frozenset[Configuration] | None = None  # C(r); None until a router sets it
    calls: int = 0

    def with_choice(self, stage: str, model: str) -> RequestState:
        return replace(
            self, chosen=MappingProxyType({**self.chosen, stage: model}), calls=self.calls + 1
        )

    def with_done(self, stage: str, model: str) -> RequestState:
        return replace(self, done=MappingProxyType({**self.done, stage: model}))


Update = Callable[[RequestState | None], RequestState]


class RequestStore(Protocol):
    async def get(self, workflow: str, request_id: str) -> RequestState | None: ...

    async def update(self, workflow: str, request_id: str, fn: Update) -> RequestState:
        """Apply ``fn`` to the current state (None when absent) atomically; store and return
        the result, refreshing its time to live."""
        ...

    def __len__(self) -> int: ...


class MemoryStore:
    """In-process store with a time to live and a hard cap; oldest-touched goes first."""

    def __init__(
        self, ttl_s: float, max_requests: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_s
        self._cap = max_requests
        self._clock = clock
        self._items: OrderedDict[tuple[str, str], tuple[float, RequestState]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _evict(self, now: float) -> None:
        while self._items:
            key, (touched, _) = next(iter(self._items.items()))
            if now - touched <= self._ttl and len(self._items) <= self._cap:
                break
            del self._items[key]

    async def get(self, workflow: str, request_id: str) -> RequestState | None:
        now = self._clock()
        self._evict(now)
        item = self._items.get((workflow, request_id))
        return item[1] if item else None

    async def update(self, workflow: str, request_id: str, fn: Update) -> RequestState:
        now = self._clock()
        self._evict(now)
        key = (workflow, request_id)
        item = self._items.pop(key, None)
        new = fn(item[1] if item else None)
        self._items[key] = (now, new)
        self._evict(now)
        return new
