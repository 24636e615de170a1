"""Immutable, timestamped views of the fleet, and the pure step that makes the next one.

Readers (scheduler, balancer, /ready, telemetry) only ever see a ``FleetSnapshot``; the
poller is the single writer and replaces the snapshot wholesale, so no reader observes a
half-updated fleet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from aragog.config import GatewayConfig, engine_id
from aragog.fleet.metrics import EngineMetrics


@dataclass(frozen=True, slots=True)
class EngineRef:
    """What is fixed about a replica: where it is and which model it serves."""

    engine_id: str
    model: str
    url: str
    served_model_name: str
    api_key: str | None = None

    def __repr__(self) -> str:  # keep keys out of logs and tracebacks
        return f"EngineRef({self.engine_id!r})"


@dataclass(frozen=True, slots=True)
class ScrapeFailure:
    error: str


ScrapeResult = EngineMetrics | ScrapeFailure


@dataclass(frozen=True, slots=True)
class EngineState:
    ref: EngineRef
    healthy: bool
    metrics: EngineMetrics | None  # last good scrape, kept while it is fresh enough
    last_ok: float | None
    last_error: str | None
    consecutive_errors: int

    @property
    def scraped_load(self) -> float:
        return 0.0 if self.metrics is None else self.metrics.running + self.metrics.waiting


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    taken_at: float
    engines: Mapping[str, EngineState]

    def of_model(self, model: str) -> list[EngineState]:
        return [e for e in self.engines.values() if e.ref.model == model]

    def healthy_of_model(self, model: str) -> list[EngineState]:
        return [e for e in self.engines.values() if e.ref.model == model and e.healthy]


def engine_refs(cfg: GatewayConfig) -> list[EngineRef]:
    return [
        EngineRef(
            engine_id=engine_id(m.name, e),
            model=m.name,
            url=e.url,
            served_model_name=e.served_model_name or m.name,
            api_key=e.api_key.get_secret_value() if e.api_key else None,
        )
        for m in cfg.fleet.models
        for e in m.engines
    ]


def initial_snapshot(refs: list[EngineRef], now: float) -> FleetSnapshot:
    """Before the first scrape nothing is known, so nothing is healthy."""
    states = {r.engine_id: EngineState(r, False, None, None, None, 0) for r in refs}
    return FleetSnapshot(now, MappingProxyType(states))


def advance(
    prev: FleetSnapshot,
    results: Mapping[str, ScrapeResult],
    now: float,
    stale_after_s: float,
) -> FleetSnapshot:
    """Fold one round of scrape results into the next snapshot.

    A failed scrape does not make an engine unhealthy at once (one slow scrape is not a dead
    engine); it does once the last good scrape is older than ``stale_after_s``, and then its
    stale metrics are dropped so nobody routes on them.
    """
    states: dict[str, EngineState] = {}
    for eid, st in prev.engines.items():
        res = results.get(eid)
        if isinstance(res, EngineMetrics):
            st = replace(st, metrics=res, last_ok=now, last_error=None, consecutive_errors=0)
        elif isinstance(res, ScrapeFailure):
            st = replace(st, last_error=res.error, consecutive_errors=st.consecutive_errors + 1)
        fresh = st.last_ok is not None and now - st.last_ok <= stale_after_s
        states[eid] = replace(st, healthy=fresh, metrics=st.metrics if fresh else None)
    return FleetSnapshot(now, MappingProxyType(states))
