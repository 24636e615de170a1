"""Scrapes every engine's /metrics concurrently and publishes fleet snapshots."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from aragog.config import MetricNames, PollerConfig
from aragog.fleet.metrics import MetricsParseError, parse_engine_metrics
from aragog.fleet.snapshot import (
    EngineRef,
    FleetSnapshot,
    ScrapeFailure,
    ScrapeResult,
    advance,
    initial_snapshot,
)

log = logging.getLogger(__name__)

Listener = Callable[[FleetSnapshot, Mapping[str, ScrapeResult]], None]


class FleetPoller:
    """The single writer of the fleet snapshot.

    The clock is injected so staleness can be tested without sleeping; every scrape has
    its own timeout so one hung engine delays nothing but its own result.
    """

    def __init__(
        self,
        refs: Sequence[EngineRef],
        client: httpx.AsyncClient,
        cfg: PollerConfig,
        names: MetricNames,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refs = list(refs)
        self._client = client
        self._cfg = cfg
        self._names = names
        self._clock = clock
        self._snapshot = initial_snapshot(self._refs, clock())
        self._listeners: list[Listener] = []
        self._starters: list[Callable[[], None]] = []

    @property
    def snapshot(self) -> FleetSnapshot:
        return self._snapshot

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_poll_start(self, callback: Callable[[], None]) -> None:
        """``callback()`` just before each round of scrapes: what they read is no older."""
        self._starters.append(callback)

    async def scrape(self, ref: EngineRef) -> ScrapeResult:
        headers = {"Authorization": f"Bearer {ref.api_key}"} if ref.api_key else None
        try:
            resp = await self._client.get(
                f"{ref.url}/metrics", headers=headers, timeout=self._cfg.timeout_s
            )
            if resp.status_code != 200:
                return ScrapeFailure(f"HTTP {resp.status_code}")
            return parse_engine_metrics(resp.text, self._names)
        except httpx.TimeoutException:
            return ScrapeFailure("timeout")
        except httpx.HTTPError as err:
            return ScrapeFailure(type(err).__name__)
        except MetricsParseError as err:
            return ScrapeFailure(f"parse: {err}")

    async def poll_once(self) -> FleetSnapshot:
        for start in self._starters:
            start()
        results = await asyncio.gather(*(self.scrape(r) for r in self._refs))
        by_id = {r.engine_id: res for r, res in zip(self._refs, results, strict=True)}
        self._snapshot = advance(self._snapshot, by_id, self._clock(), self._cfg.stale_after_s)
        for listener in self._listeners:
            try:
                listener(self._snapshot, by_id)
            except Exception:  # a broken listener must not stop the fleet view
                log.exception("snapshot listener failed")
        return self._snapshot

    async def run(self) -> None:
        """Poll forever at the configured interval (cancel the task to stop)."""
        while True:
            started = self._clock()
            await self.poll_once()
            await asyncio.sleep(max(0.0, self._cfg.interval_s - (self._clock() - started)))
