"""Baseline policy ``largest``: every stage on its most expensive candidate.

This is not routing: it is the accuracy reference (c_max) the router and scheduler are
measured against, and what serves workflow calls when no smarter policy is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aragog.fleet.load import InFlight, least_loaded
from aragog.fleet.snapshot import FleetSnapshot
from aragog.scheduler.base import Dispatch, NoCapacity, StageCall


class LargestPolicy:
    name = "largest"

    def __init__(
        self,
        snapshot: Callable[[], FleetSnapshot],
        inflight: InFlight,
        cost: Mapping[str, float],
    ) -> None:
        self._snapshot = snapshot
        self._inflight = inflight
        self._cost = cost

    async def acquire(self, call: StageCall) -> Dispatch:
        stage = call.workflow.stage(call.stage)
        assert stage is not None, "the API validates stages before scheduling"
        snap = self._snapshot()
        # A stage seen before in this request keeps its model; otherwise the largest
        # candidate that has a healthy replica (degrading beats failing the request).
        previous = call.request.chosen.get(call.stage)
        order = sorted(stage.models, key=lambda m: -self._cost[m])
        if previous is not None:
            order = [previous] + [m for m in order if m != previous]
        for model in order:
            engine = least_loaded(snap.of_model(model), self._inflight)
            if engine is not None:
                return Dispatch(model, engine.ref)
        raise NoCapacity(f"no healthy engine for any candidate of stage {call.stage!r}")

    def release(self, dispatch: Dispatch) -> None:
        return None
