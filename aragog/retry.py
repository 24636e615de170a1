"""Whether a failed upstream try may be tried again: a pure decision, table-tested.

The one rule that matters: never after the first byte reached the client. A client that
has seen half an answer cannot be given another engine's other half, so from then on a
failure ends the stream with an error event instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Failure(enum.Enum):
    REFUSED = "refused"  # connection refused/reset before a request was sent: safe to retry
    TIMEOUT = "timeout"  # no first byte in time (hung or overloaded engine)
    BROKEN = "broken"  # connection dropped before the first byte (engine died mid-call)
    OVERLOADED = "overloaded"  # engine answered 502/503/504 before any content
    ABORTED = "aborted"  # the gateway took the engine out (breaker) while the call waited


# Statuses an engine or its proxy gives for a transient condition of that replica; a 500
# is usually the request's own fault (a retry elsewhere would fail the same way).
RETRYABLE_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int  # 1 for the first try
    failure: Failure
    client_saw_bytes: bool
    now: float
    deadline: float  # the call's total budget ends here (same clock as now)


def should_retry(a: Attempt, max_attempts: int) -> bool:
    if a.client_saw_bytes:
        return False
    if a.number >= max_attempts:
        return False
    return a.now < a.deadline
