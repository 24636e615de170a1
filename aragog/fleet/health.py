"""Engine health beyond scrape staleness: a circuit breaker per engine, and the fleet view
the scheduler and balancer read.

Scrapes alone take ``stale_after_s`` (2 s) to notice a dead engine; a refused connection
or a few timeouts say it sooner. The breaker opens on those, keeps the engine out while
open, and closes again on a probe: the first good scrape after ``cooldown_s``. Scrapes make
good probes: they run anyway every poll interval, cost the engine nothing, and a hung
engine cannot answer them either.

The state machine is a pure function of (state, event, now); ``Breakers`` is the shell
that holds one state per engine and overlays them on the poller's snapshot.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from types import MappingProxyType

from aragog.config import BreakerConfig
from aragog.fleet.snapshot import FleetSnapshot


class Phase(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2  # cooldown over; the next probe decides


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # timeout, 5xx-free transport error, bad scrape
    REFUSED = "refused"  # connection refused or reset: nobody is listening; opens at once


@dataclass(frozen=True, slots=True)
class BreakerState:
    phase: Phase = Phase.CLOSED
    failures: int = 0  # consecutive, while closed
    opened_at: float = 0.0


CLOSED = BreakerState()


def step(st: BreakerState, outcome: Outcome, now: float, cfg: BreakerConfig) -> BreakerState:
    """The next state after one observed outcome."""
    if outcome is Outcome.SUCCESS:
        if st.phase is Phase.CLOSED:
            return st if st.failures == 0 else CLOSED
        # A success while open counts only once the cooldown is over: an answer that was
        # already on the wire when the engine failed proves nothing about it now.
        return CLOSED if now - st.opened_at >= cfg.cooldown_s else st
    if st.phase is Phase.CLOSED:
        failures = st.failures + 1
        if outcome is Outcome.REFUSED or failures >= cfg.failure_threshold:
            return BreakerState(Phase.OPEN, 0, now)
        return replace(st, failures=failures)
    return BreakerState(Phase.OPEN, 0, now)  # a failed probe (or more failures): stay out


def tick(st: BreakerState, now: float, cfg: BreakerConfig) -> BreakerState:
    """Time passing: an open breaker becomes half-open after its cooldown."""
    if st.phase is Phase.OPEN and now - st.opened_at >= cfg.cooldown_s:
        return replace(st, phase=Phase.HALF_OPEN)
    return st


class Breakers:
    """One breaker per engine and the snapshot overlay that hides open ones.

    ``view`` is on every placement's path, so it returns the poller's snapshot itself while
    every breaker is closed and caches the overlay otherwise; it is rebuilt only when a
    breaker changes phase or a new snapshot arrives.
    """

    def __init__(
        self,
        engine_ids: Iterable[str],
        cfg: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, Phase], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._states = dict.fromkeys(engine_ids, CLOSED)
        self._not_closed: set[str] = set()
        self._on_change = on_change
        self._cache: tuple[FleetSnapshot, FleetSnapshot] | None = None

    def phase(self, engine_id: str) -> Phase:
        return self._states.get(engine_id, CLOSED).phase

    def record(self, engine_id: str, outcome: Outcome) -> None:
        prev = self._states.get(engine_id)
        if prev is None or (outcome is Outcome.SUCCESS and prev is CLOSED):
            return  # the common case costs a dict lookup
        now = self._clock()
        new = step(tick(prev, now, self._cfg), outcome, now, self._cfg)
        self._set(engine_id, prev, new)

    def advance(self) -> None:
        """Apply cooldowns (called once per poll)."""
        now = self._clock()
        for eid in list(self._not_closed):
            prev = self._states[eid]
            self._set(eid, prev, tick(prev, now, self._cfg))

    def _set(self, engine_id: str, prev: BreakerState, new: BreakerState) -> None:
        self._states[engine_id] = new
        if new.phase is Phase.CLOSED:
            self._not_closed.discard(engine_id)
        else:
            self._not_closed.add(engine_id)
        if new.phase is not prev.phase:
            self._cache = None
            if self._on_change is not None:
                self._on_change(engine_id, new.phase)

    def view(self, snap: FleetSnapshot) -> FleetSnapshot:
        """``snap`` with engines whose breaker is not closed marked unhealthy."""
        if not self._not_closed:
            return snap
        cached = self._cache
        if cached is not None and cached[0] is snap:
            return cached[1]
        engines = dict(snap.engines)
        for eid in self._not_closed:
            st = engines.get(eid)
            if st is not None and st.healthy:
                engines[eid] = replace(st, healthy=False)
        out = FleetSnapshot(snap.taken_at, MappingProxyType(engines))
        self._cache = (snap, out)
        return out
