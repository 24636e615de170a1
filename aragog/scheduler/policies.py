"""The queued workflow policies: Aragog and the baselines that share its meta-queue.

Each is the same ``Policy`` over one ``JitScheduler``; they differ only in the C(r) a call
is queued with and the beam width it is placed under:

- ``aragog``: C(r) narrowed by the request's earlier choices; beam width as configured.
- ``greedy``: the same, width 1.
- ``per-input``: C(r) bound at arrival to its cheapest configuration.
- ``per-input-load``: bound at arrival to the configuration cheapest under current load.
- ``per-workflow``: one static configuration for all requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from aragog.config import WorkflowPolicyConfig
from aragog.scheduler.base import Dispatch, StageCall
from aragog.scheduler.binding import per_input, per_input_load, per_workflow
from aragog.scheduler.jit import JitScheduler
from aragog.scheduler.tables import Mask, WorkflowTable
from aragog.state import RequestState, RequestStore


class QueuedPolicy:
    def __init__(
        self,
        scheduler: JitScheduler,
        table: WorkflowTable,
        pc: WorkflowPolicyConfig,
        cost: Mapping[str, float],
        store: RequestStore,
    ) -> None:
        assert pc.policy != "largest", "largest does not queue"
        self.name: str = pc.policy
        self._scheduler = scheduler
        self._table = table
        self._pc = pc
        self._cost = cost
        self._store = store
        self._width = pc.beam_width if pc.policy == "aragog" else 1

    async def acquire(self, call: StageCall) -> Dispatch:
        st = call.request
        key = f"{st.workflow}/{st.request_id}"
        mask = await self._mask(st, key)
        return await self._scheduler.submit(
            key, st.arrival, self._table, call.stage, mask, self._width
        )

    def release(self, dispatch: Dispatch) -> None:
        self._scheduler.release(dispatch)

    async def _mask(self, st: RequestState, key: str) -> Mask:
        table, policy = self._table, self.name
        if policy == "per-workflow":
            return per_workflow(table, self._pc.configuration, self._cost)
        mask = table.narrowed(st.viable, st.chosen)
        if policy == "per-input":
            # Deterministic in C(r), so recomputing it on every call gives the same binding.
            return per_input(table, mask, self._cost)
        if policy == "per-input-load" and mask.bit_count() > 1:
            live = self._scheduler.live_mask(key)
            if live is not None and live.bit_count() == 1:
                return live  # a sibling call bound it a moment ago
            return await self._bind_by_load(st, mask)
        return mask

    async def _bind_by_load(self, st: RequestState, mask: Mask) -> Mask:
        """Bind once per request; the store keeps the binding (C(r) of one configuration)
        so later calls, on any gateway replica, see it. First writer wins."""
        table = self._table
        pick = per_input_load(table, mask, self._cost, self._scheduler.pressure())
        (config,) = table.members(pick)

        def bind(s: RequestState | None) -> RequestState:
            s = s or st
            if s.viable is not None and len(s.viable) == 1:
                return s
            return replace(s, viable=frozenset({config}))

        stored = await self._store.update(st.workflow, st.request_id, bind)
        return table.narrowed(stored.viable, stored.chosen)
