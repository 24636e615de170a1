"""The discrete-event loop: simulated time, simulated engines, and the real gateway pieces
(``QueuedPolicy`` / ``LargestPolicy`` over the real ``JitScheduler``, the real request store)
driven through an injected clock and fleet view.

Each request is a coroutine that does what an agent client plus the gateway's call path do
(``aragog/api/calls.py``): acquire a placement from the policy, record the choice in the
request state, run the call on the chosen engine, release. Simulated time only moves
between events; after each event the asyncio loop is run until nothing is runnable (the
scheduler's coalesced round included), so every decision happens at the event's instant.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aragog.config import SchedulerConfig, WorkflowPolicyConfig
from aragog.fleet.load import InFlight
from aragog.fleet.metrics import EngineMetrics
from aragog.fleet.snapshot import EngineRef, EngineState, FleetSnapshot
from aragog.router.rules import CascadeRule, Rule, VotingRule, outcome_for
from aragog.scheduler.base import Dispatch, Policy, StageCall
from aragog.scheduler.capacity import EngineProfile
from aragog.scheduler.jit import JitScheduler
from aragog.scheduler.largest import LargestPolicy
from aragog.scheduler.policies import QueuedPolicy
from aragog.scheduler.tables import WorkflowTable
from aragog.sim.engine import Seq, SimEngine
from aragog.sim.workload import Arrival, Question, stage_prompt
from aragog.state import MemoryStore, RequestState
from aragog.workflow.spec import WorkflowSpec

_ARRIVAL, _ENGINE, _SCRAPE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class RequestResult:
    request_id: str
    arrival: float
    finish: float | None  # None: not finished when the run stopped
    correct: bool
    config: tuple[str, ...]
    calls: int
    cost: float  # parameters (B) summed over the calls that ran

    @property
    def latency(self) -> float:
        return float("inf") if self.finish is None else self.finish - self.arrival


@dataclass(slots=True)
class RunStats:
    max_queue: int = 0
    preemptions: int = 0
    stopped_early: bool = False
    engine_busy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SimSetup:
    spec: WorkflowSpec
    rule: Rule
    cost: Mapping[str, float]
    policy: WorkflowPolicyConfig
    sched: SchedulerConfig
    profiles: Mapping[str, EngineProfile]  # engine id -> profile
    engine_models: Mapping[str, str]  # engine id -> model
    scrape_interval_s: float = 0.1
    drain_s: float = 600.0  # after the last arrival, at most this long to finish
    max_queue: int = 3000  # meta-queue (or engine queue) length that stops the run: overload
    slo_s: float | None = None  # with it, stop once > late_fraction of requests exceed it
    late_fraction: float = 0.05


class Simulation:
    def __init__(
        self,
        setup: SimSetup,
        engines: Mapping[str, SimEngine],
        arrivals: Sequence[Arrival],
    ) -> None:
        self.s = setup
        self.engines = dict(engines)
        self.arrivals = list(arrivals)
        self.now = 0.0
        self.results: list[RequestResult] = []
        self.stats = RunStats()
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._pushed: dict[str, float] = {}
        self._snap = self._take_snapshot()
        self._inflight = InFlight()
        self._store = MemoryStore(ttl_s=1e9, max_requests=10**7, clock=self.clock)
        self._table = WorkflowTable(setup.spec)
        self.scheduler = JitScheduler(
            self.snapshot, setup.profiles, setup.sched, self._inflight, clock=self.clock
        )
        self.policy: Policy
        if setup.policy.policy == "largest":
            self.policy = LargestPolicy(self.snapshot, self._inflight, setup.cost)
        else:
            self.policy = QueuedPolicy(
                self.scheduler, self._table, setup.policy, setup.cost, self._store
            )
        self._active: dict[str, float] = {}  # request id -> arrival, oldest first
        self._late = 0  # finished later than the SLO

    # -- the injected clock and fleet view --------------------------------------------------

    def clock(self) -> float:
        return self.now

    def snapshot(self) -> FleetSnapshot:
        return self._snap

    def _take_snapshot(self) -> FleetSnapshot:
        states = {}
        for eid, e in self.engines.items():
            model = self.s.engine_models[eid]
            ref = EngineRef(eid, model, f"http://sim/{eid}", model)
            m = EngineMetrics(float(e.running), float(e.queued), e.kv_usage())
            states[eid] = EngineState(ref, True, m, self.now, None, 0)
        return FleetSnapshot(self.now, MappingProxyType(states))

    # -- the event loop -------------------------------------------------------------------

    def _push(self, t: float, kind: int, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, data))

    async def run(self, progress: Callable[[float], None] | None = None) -> list[RequestResult]:
        loop = asyncio.get_running_loop()
        for a in self.arrivals:
            self._push(a.at, _ARRIVAL, a)
        self._push(0.0, _SCRAPE, None)
        last = self.arrivals[-1].at if self.arrivals else 0.0
        horizon = last + self.s.drain_s
        tasks: list[asyncio.Task[None]] = []
        while self._heap:
            t, _, kind, data = heapq.heappop(self._heap)
            if t > horizon:
                self.stats.stopped_early = True
                break
            self.now = t
            if kind == _ARRIVAL:
                tasks.append(loop.create_task(self._request(data)))
            elif kind == _ENGINE:
                eng = self.engines[data]
                if eng.next_time != t:
                    continue  # superseded
                for s in eng.finish_step(t):
                    fut: asyncio.Future[None] = s.payload
                    fut.set_result(None)
            else:
                self._snap = self._take_snapshot()
                self.scheduler.on_snapshot(self._snap)
                if self._over_slo():
                    self.stats.stopped_early = True
                    break
                if self._active or self.now < last:
                    self._push(t + self.s.scrape_interval_s, _SCRAPE, None)
            await _settle(loop)
            self._schedule_engines()
            queued = len(self.scheduler) + sum(e.queued for e in self.engines.values())
            self.stats.max_queue = max(self.stats.max_queue, queued)
            if queued > self.s.max_queue:
                self.stats.stopped_early = True
                break
            if progress is not None and kind == _ARRIVAL:
                progress(t)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.stats.preemptions = sum(e.stats.preemptions for e in self.engines.values())
        self.stats.engine_busy = {k: e.stats.busy_s for k, e in self.engines.items()}
        finished = {r.request_id for r in self.results}
        for a in self.arrivals:
            if a.request_id not in finished:
                self.results.append(RequestResult(a.request_id, a.at, None, False, (), 0, 0.0))
        return self.results

    def _over_slo(self) -> bool:
        """More than ``late_fraction`` of all requests already exceed the SLO (finished late
        or still running past it): the p95 verdict is known, so an overloaded run stops
        here instead of simulating an ever longer queue (each round scans all of it)."""
        slo = self.s.slo_s
        if slo is None:
            return False
        limit = self.s.late_fraction * len(self.arrivals)
        late = self._late
        for arrived in self._active.values():
            if self.now - arrived <= slo or late > limit:
                break
            late += 1
        return late > limit

    def _schedule_engines(self) -> None:
        for eid, e in self.engines.items():
            nt = e.next_time
            if nt is not None and self._pushed.get(eid) != nt:
                self._pushed[eid] = nt
                self._push(nt, _ENGINE, eid)

    # -- one request: the agent client and the gateway's call path ----------------------

    async def _request(self, a: Arrival) -> None:
        self._active[a.request_id] = a.at
        spec, q = self.s.spec, a.question
        wf = spec.name
        state = RequestState(wf, a.request_id, a.at, viable=q.viable)
        await self._store.update(wf, a.request_id, lambda _: state)
        rule = self.s.rule
        chosen: dict[str, str] = {}
        outs: dict[str, int] = {}
        if isinstance(rule, VotingRule):
            await asyncio.gather(*(self._call(a, v, [], chosen, outs) for v in rule.voters))
            up = [outs[v] for v in rule.voters]
            await self._call(a, rule.aggregator, up, chosen, outs)
        else:
            assert isinstance(rule, CascadeRule)
            await asyncio.gather(*(self._call(a, s, [], chosen, outs) for s in rule.solvers))
            x, y = (q.answers[chosen[s]] for s in rule.solvers)
            if not (x and x == y):
                await self._call(a, rule.judge, [outs[s] for s in rule.solvers], chosen, outs)
        config = tuple(
            chosen.get(s) or spec.largest(self.s.cost)[i] for i, s in enumerate(spec.stage_names)
        )
        out = outcome_for(rule, spec, config, q.answers, q.correct)
        cost = sum(self.s.cost[chosen[s]] for s in chosen)
        self.results.append(
            RequestResult(a.request_id, a.at, self.now, out.correct, config, len(chosen), cost)
        )
        del self._active[a.request_id]
        if self.s.slo_s is not None and self.now - a.at > self.s.slo_s:
            self._late += 1

    async def _call(
        self,
        a: Arrival,
        stage: str,
        upstream: list[int],
        chosen: dict[str, str],
        outs: dict[str, int],
    ) -> None:
        wf = self.s.spec.name
        st = await self._store.get(wf, a.request_id)
        assert st is not None
        dispatch: Dispatch = await self.policy.acquire(StageCall(self.s.spec, stage, st))
        await self._store.update(wf, a.request_id, lambda s: _with_choice(s, stage, dispatch))
        eid = dispatch.engine.engine_id
        self._inflight.acquire(eid)
        q: Question = a.question
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        out = q.out_tokens[dispatch.model]
        self.engines[eid].submit(Seq(fut, stage_prompt(stage, q, upstream), out), self.now)
        try:
            await fut
        finally:
            self._inflight.release(eid)
            self.policy.release(dispatch)
        chosen[stage] = dispatch.model
        outs[stage] = out


def _with_choice(s: RequestState | None, stage: str, d: Dispatch) -> RequestState:
    assert s is not None
    return s.with_choice(stage, d.model)


async def _settle(loop: asyncio.AbstractEventLoop, limit: int = 10_000) -> None:
    """Run the loop until nothing is runnable: every request is waiting on a lease or an
    engine, and any round the events triggered has run. Reads asyncio's ready queue (a
    private attribute, stable since 3.4); no timers are ever set, so empty means idle."""
    ready = loop._ready  # type: ignore[attr-defined]
    for _ in range(limit):
        await asyncio.sleep(0)
        if not ready:
            return
    raise RuntimeError("the simulated gateway did not settle")
