"""The async shell around the pure round: the meta-queue of waiting calls, the ledger of
slots the scheduler has handed out, and the coalesced triggers that run rounds.

A round runs on arrival, on completion and on a new fleet snapshot; however many of
those happen in one event-loop iteration, one round runs (``call_soon`` once, then
nothing until it has run). Waiters are futures: a round resolves the ones it places.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from aragog.config import SchedulerConfig
from aragog.fleet.load import InFlight
from aragog.fleet.snapshot import FleetSnapshot, ScrapeResult
from aragog.scheduler.base import Dispatch, NoCapacity
from aragog.scheduler.binding import model_pressure
from aragog.scheduler.capacity import EngineProfile, engine_slots, smooth
from aragog.scheduler.round import QueuedCall, RoundPlan, plan_round
from aragog.scheduler.tables import Mask, WorkflowTable
from aragog.telemetry import Metrics


class QueueFull(Exception):
    """The meta-queue holds its maximum; the API answers 429 with Retry-After."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        super().__init__(f"the scheduler queue is full ({limit} calls waiting); retry later")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Lease(Dispatch):
    """A dispatch that remembers what to give back on release."""

    request: str = ""
    call_id: int = 0


class _Waiter:
    __slots__ = ("call", "enqueued", "future", "stage", "workflow")

    def __init__(
        self,
        call: QueuedCall,
        future: asyncio.Future[Lease],
        enqueued: float,
        workflow: str,
        stage: str,
    ) -> None:
        self.call = call
        self.future = future
        self.enqueued = enqueued
        self.workflow = workflow
        self.stage = stage


class _Live:
    """A request with calls queued or in flight here: its C(r) as narrowed by this
    scheduler's dispatches, which the store only learns after ``acquire`` returns."""

    __slots__ = ("mask", "refs")

    def __init__(self, mask: Mask) -> None:
        self.mask = mask
        self.refs = 0


class JitScheduler:
    """One meta-queue for every queued workflow policy of a gateway: engines are shared,
    so their slots must be accounted in one place."""

    def __init__(
        self,
        snapshot: Callable[[], FleetSnapshot],
        profiles: Mapping[str, EngineProfile],
        cfg: SchedulerConfig,
        inflight: InFlight | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self._profiles = profiles
        self._cfg = cfg
        self._inflight = inflight
        self._metrics = metrics
        self._clock = clock
        self._queue: dict[int, _Waiter] = {}
        self._live: dict[str, _Live] = {}
        self._held: dict[str, int] = {}  # slots handed out and not yet released
        self._peaks: dict[str, int] = {}  # most of _held at once since the last snapshot
        self._others: dict[str, float] = {}  # other clients' load, smoothed
        self._next_id = 0
        self._pending: asyncio.Handle | None = None
        self.last_plan: RoundPlan | None = None

    def __len__(self) -> int:
        return len(self._queue)

    # -- inputs ---------------------------------------------------------------------------

    def begin_window(self) -> None:
        """Scrapes start now (the poller calls this): count our calls from here on."""
        self._take_peaks()

    def on_snapshot(self, snap: FleetSnapshot, _: Mapping[str, ScrapeResult] | None = None) -> None:
        # A scrape reads the engine at some moment after it started. Calls of ours that
        # ended since then were still in its running count; subtracting only those in
        # flight now would make them phantom load of "other clients" (seconds of it, with
        # short calls and slow scrapes). So subtract the most we had in flight since the
        # scrapes began (or since the previous snapshot, for a driver without a poller).
        self._others = smooth(self._others, snap, self._take_peaks(), self._cfg.load_smoothing)
        self._kick()

    def _take_peaks(self) -> dict[str, int]:
        peaks, self._peaks = self._peaks, dict(self._held)
        for eid, n in self._held.items():
            peaks[eid] = max(peaks.get(eid, 0), n)
        if self._inflight is not None:
            for eid, n in self._inflight.take_peaks().items():
                peaks[eid] = max(peaks.get(eid, 0), n)
        return peaks

    def ours(self) -> dict[str, int]:
        """Per engine, the larger of our outstanding leases and the gateway's in-flight
        count (which also sees plain calls, but only once a call has started)."""
        out = dict(self._held)
        if self._inflight is not None:
            for eid, n in self._inflight.view().items():
                out[eid] = max(out.get(eid, 0), n)
        return out

    def pressure(self) -> dict[str, float]:
        return model_pressure(self._snapshot(), self._others, self.ours(), self._profiles)

    def live_mask(self, request: str) -> Mask | None:
        live = self._live.get(request)
        return None if live is None else live.mask

    async def submit(
        self,
        request: str,
        arrival: float,
        table: WorkflowTable,
        stage: str,
        mask: Mask,
        width: int,
    ) -> Lease:
        if len(self._queue) >= self._cfg.max_queue:
            self._count_rejected(table.spec.name, "queue_full")
            raise QueueFull(self._cfg.max_queue, self._cfg.retry_after_s)
        live = self._live.get(request)
        if live is None:
            live = self._live[request] = _Live(mask)
        else:  # a sibling was placed since this call's state was read
            # Disjoint only when the store knows a choice made on another replica: it wins.
            live.mask = (live.mask & mask) or mask
        live.refs += 1
        cid, self._next_id = self._next_id, self._next_id + 1
        call = QueuedCall(cid, request, arrival, table, table.stage_index[stage], live.mask, width)
        fut: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._queue[cid] = _Waiter(call, fut, self._clock(), table.spec.name, stage)
        self._kick()
        try:
            return await fut
        except asyncio.CancelledError:
            # Placed in the same loop iteration as the cancel: give the slot back.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result())
            elif self._queue.pop(cid, None) is not None:
                self._unref(request)
            self._set_queue_gauge()
            raise

    def release(self, dispatch: Dispatch) -> None:
        assert isinstance(dispatch, Lease), "only leases from this scheduler come back"
        eid = dispatch.engine.engine_id
        left = self._held.get(eid, 0) - 1
        if left > 0:
            self._held[eid] = left
        else:
            self._held.pop(eid, None)
        self._unref(dispatch.request)
        self._kick()

    # -- rounds ---------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._pending is not None or not self._queue:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven synchronously (a simulator): it calls round_now
            return
        self._pending = loop.call_soon(self._round)

    def _round(self) -> None:
        self._pending = None
        self.round_now()

    def round_now(self) -> RoundPlan | None:
        """Run one round at once (the coalesced trigger calls this; so can a simulator)."""
        for cid in [c for c, w in self._queue.items() if w.future.done()]:
            self._unref(self._queue.pop(cid).call.request)  # cancelled, not yet resumed
        if not self._queue:
            self._set_queue_gauge()
            return None
        started = time.perf_counter()
        snap = self._snapshot()
        engines = engine_slots(snap, self._others, self.ours(), self._profiles, self._cfg)
        plan = plan_round([w.call for w in self._queue.values()], engines, self._cfg.lookahead)
        elapsed = time.perf_counter() - started
        self._apply(plan, snap)
        self.last_plan = plan
        if self._metrics is not None:
            self._metrics.sched_round.observe(elapsed)
            self._metrics.sched_round_queue.observe(len(plan.assignments) + len(plan.skipped))
        self._set_queue_gauge()
        return plan

    def _apply(self, plan: RoundPlan, snap: FleetSnapshot) -> None:
        now = self._clock()
        touched: set[str] = set()
        for a in plan.assignments:
            w = self._queue.pop(a.call_id)
            self._live[w.call.request].mask = a.mask
            touched.add(w.call.request)
            held = self._held[a.engine_id] = self._held.get(a.engine_id, 0) + 1
            self._peaks[a.engine_id] = max(self._peaks.get(a.engine_id, 0), held)
            w.future.set_result(
                Lease(a.model, snap.engines[a.engine_id].ref, w.call.request, a.call_id)
            )
            if self._metrics is not None:
                self._metrics.sched_assigned.labels(w.workflow, w.stage, a.model).inc()
                self._metrics.sched_wait.labels(w.workflow, w.stage).observe(now - w.enqueued)
        for cid in plan.unservable:
            w = self._queue.pop(cid)
            self._unref(w.call.request)
            self._count_rejected(w.workflow, "no_engine")
            w.future.set_exception(
                NoCapacity(f"no healthy engine for any allowed model of stage {w.stage!r}")
            )
        if touched:  # siblings still queued see the narrowed C(r)
            for w in self._queue.values():
                if w.call.request in touched:
                    w.call = replace(w.call, mask=self._live[w.call.request].mask)
        if self._metrics is not None:
            for cid in plan.skipped:
                w2 = self._queue.get(cid)
                if w2 is not None:
                    self._metrics.sched_skipped.labels(w2.workflow).inc()

    def _unref(self, request: str) -> None:
        live = self._live.get(request)
        if live is not None:
            live.refs -= 1
            if live.refs <= 0:
                del self._live[request]

    def _set_queue_gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.sched_queue.set(len(self._queue))

    def _count_rejected(self, workflow: str, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.sched_rejected.labels(workflow, reason).inc()
