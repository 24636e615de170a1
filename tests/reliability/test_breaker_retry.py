"""Pure cores: the breaker state machine and the retry decision, table-driven."""

from __future__ import annotations

import pytest

from aragog.config import BreakerConfig
from aragog.fleet.health import CLOSED, Breakers, BreakerState, Outcome, Phase, step, tick
from aragog.fleet.snapshot import EngineRef, EngineState, FleetSnapshot
from aragog.retry import Attempt, Failure, should_retry

CFG = BreakerConfig(failure_threshold=2, cooldown_s=1.0)
S, F, R = Outcome.SUCCESS, Outcome.FAILURE, Outcome.REFUSED
OPEN_AT_10 = BreakerState(Phase.OPEN, 0, 10.0)


@pytest.mark.parametrize(
    ("before", "outcome", "now", "after"),
    [
        (CLOSED, S, 0.0, CLOSED),
        (CLOSED, F, 0.0, BreakerState(Phase.CLOSED, 1, 0.0)),
        (BreakerState(Phase.CLOSED, 1, 0.0), F, 5.0, BreakerState(Phase.OPEN, 0, 5.0)),
        (BreakerState(Phase.CLOSED, 1, 0.0), S, 5.0, CLOSED),  # not consecutive any more
        (CLOSED, R, 3.0, BreakerState(Phase.OPEN, 0, 3.0)),  # refused: out at once
        (OPEN_AT_10, S, 10.5, OPEN_AT_10),  # success inside the cooldown proves nothing
        (OPEN_AT_10, S, 11.0, CLOSED),  # the probe after the cooldown closes it
        (OPEN_AT_10, F, 10.5, BreakerState(Phase.OPEN, 0, 10.5)),  # still failing: stay out
        (BreakerState(Phase.HALF_OPEN, 0, 10.0), S, 11.2, CLOSED),
        (BreakerState(Phase.HALF_OPEN, 0, 10.0), F, 11.2, BreakerState(Phase.OPEN, 0, 11.2)),
    ],
)
def test_step(before: BreakerState, outcome: Outcome, now: float, after: BreakerState) -> None:
    assert step(before, outcome, now, CFG) == after


@pytest.mark.parametrize(
    ("before", "now", "phase"),
    [(OPEN_AT_10, 10.9, Phase.OPEN), (OPEN_AT_10, 11.0, Phase.HALF_OPEN),
     (CLOSED, 99, Phase.CLOSED)],
)
def test_tick(before: BreakerState, now: float, phase: Phase) -> None:
    assert tick(before, now, CFG).phase is phase


def _snap(*ids: str) -> FleetSnapshot:
    engines = {i: EngineState(EngineRef(i, "m", "http://x", "m"), True, None, 0.0, None, 0)
               for i in ids}
    return FleetSnapshot(0.0, engines)


def test_breakers_view_hides_open_engines_and_caches() -> None:
    now = [0.0]
    changes: list[tuple[str, Phase]] = []
    b = Breakers(["a", "b"], CFG, lambda: now[0], lambda e, p: changes.append((e, p)))
    snap = _snap("a", "b")
    assert b.view(snap) is snap  # all closed: no copy
    b.record("a", Outcome.REFUSED)
    view = b.view(snap)
    assert not view.engines["a"].healthy and view.engines["b"].healthy
    assert b.view(snap) is view  # cached until something changes
    now[0] = 1.5
    b.advance()
    assert b.phase("a") is Phase.HALF_OPEN and b.view(snap) is not view
    b.record("a", Outcome.SUCCESS)
    assert b.view(snap) is snap
    assert changes == [("a", Phase.OPEN), ("a", Phase.HALF_OPEN), ("a", Phase.CLOSED)]
    b.record("unknown", Outcome.REFUSED)  # engines not in the fleet are ignored


@pytest.mark.parametrize(
    ("number", "saw_bytes", "now", "retry"),
    [
        (1, False, 0.0, True),
        (2, False, 0.0, True),
        (3, False, 0.0, False),  # budget of 3 tries spent
        (1, True, 0.0, False),  # the client has bytes: never
        (1, False, 10.0, False),  # past the call's deadline
    ],
)
@pytest.mark.parametrize("failure", list(Failure))
def test_should_retry(number: int, saw_bytes: bool, now: float, retry: bool,
                      failure: Failure) -> None:
    assert should_retry(Attempt(number, failure, saw_bytes, now, 10.0), 3) is retry
