"""Engine load as the gateway sees it, and the plain-call replica choice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aragog.fleet.snapshot import EngineState


class InFlight:
    """The gateway's own count of calls in flight per engine.

    Scraped gauges lag a burst by up to one poll interval; this count does not, so load
    decisions blend the two.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._peaks: dict[str, int] = {}

    def acquire(self, engine_id: str) -> None:
        n = self._counts[engine_id] = self._counts.get(engine_id, 0) + 1
        if n > self._peaks.get(engine_id, 0):
            self._peaks[engine_id] = n

    def release(self, engine_id: str) -> None:
        left = self._counts.get(engine_id, 0) - 1
        if left > 0:
            self._counts[engine_id] = left
        else:
            self._counts.pop(engine_id, None)

    def get(self, engine_id: str) -> int:
        return self._counts.get(engine_id, 0)

    def view(self) -> Mapping[str, int]:
        return dict(self._counts)

    def take_peaks(self) -> dict[str, int]:
        """Per engine, the most calls in flight at once since the previous call (or since
        creation); the window restarts at the current counts."""
        peaks, self._peaks = self._peaks, dict(self._counts)
        for eid, n in self._counts.items():
            peaks[eid] = max(peaks.get(eid, 0), n)
        return peaks


def engine_load(state: EngineState, inflight: int) -> float:
    """Running + waiting as scraped, or our own in-flight count if that is higher.

    The scraped figure already includes our calls once the engine has seen them, so adding
    the two would double count; the max is exact in both the steady state and a burst.
    """
    return max(state.scraped_load, float(inflight))


def least_loaded(candidates: Sequence[EngineState], inflight: InFlight) -> EngineState | None:
    """Healthy replica with the lowest load; KV usage then id break ties deterministically."""
    best: EngineState | None = None
    best_key: tuple[float, float, str] | None = None
    for e in candidates:
        if not e.healthy:
            continue
        kv = e.metrics.kv_usage if e.metrics else 0.0
        key = (engine_load(e, inflight.get(e.ref.engine_id)), kv, e.ref.engine_id)
        if best_key is None or key < best_key:
            best, best_key = e, key
    return best
