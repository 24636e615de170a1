"""One scheduling round as a pure function: (queued calls with their C(r), free slots and
marginal gains per engine) -> assignments. No clock, no I/O, no mutation of its inputs, so
the gateway, the tests and the simulator all drive exactly this code.

Beam search over the queue in order. A partial assignment is extended with every model the
call may still use (the projection of its request's C(r) at that stage, narrowed by the
models this same beam already gave the request's other calls) that has a free slot; ranked
by forecast throughput gain, ties by flexibility (least share of C(r) given up). A call that
fits nowhere in a beam is skipped there and never blocks the calls behind it.

Lookahead: a choice also narrows C(r) for the request's stages that are not in the queue
yet (an aggregator waits for its voters). Ranking by this round's gain alone would happily
put a voter on the small model even when every configuration left then forces the
aggregator onto a saturated large one. So a candidate is also credited with the best gain
its request's open stages could still add at this round's prices (each model's best next
slot; nothing for a model that is full): a choice that pins later stages onto a saturated
model is charged for it, one that keeps cheap room open is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from aragog.scheduler.tables import Mask, WorkflowTable


@dataclass(frozen=True, slots=True)
class QueuedCall:
    call_id: int
    request: str  # unique per request across workflows, e.g. "workflow/request-id"
    arrival: float  # the request's arrival: FIFO across requests
    table: WorkflowTable
    stage: int
    mask: Mask  # the request's C(r), prefix-consistent with its calls already dispatched
    width: int = 4  # beam width while this call is placed (1 = greedy)

    @property
    def depth(self) -> int:
        return self.table.depth[self.stage]


@dataclass(frozen=True, slots=True)
class EngineSlots:
    """One healthy replica as a round sees it; ``gains[k]`` is the throughput forecast to
    be added by its (k+1)-th call this round, so ``len(gains)`` is its free slots."""

    engine_id: str
    model: str
    gains: tuple[float, ...]

    @property
    def free(self) -> int:
        return len(self.gains)


@dataclass(frozen=True, slots=True)
class Assignment:
    call_id: int
    model: str
    engine_id: str
    mask: Mask  # the request's C(r) after this choice


@dataclass(frozen=True, slots=True)
class RoundPlan:
    assignments: tuple[Assignment, ...]
    skipped: tuple[int, ...]  # call ids left queued, in queue order
    unservable: tuple[int, ...]  # skipped calls no healthy engine could ever serve
    gain: float  # forecast throughput gain of the assignments (lookahead credit excluded)


def queue_order(calls: Sequence[QueuedCall]) -> list[QueuedCall]:
    """FIFO across requests by arrival; within a request the deepest stage first (longest
    path to a leaf, the critical path); then by arrival of the call. A request's calls end
    up adjacent, which the beam relies on."""
    return sorted(calls, key=lambda c: (c.arrival, c.request, -c.table.depth[c.stage], c.call_id))


# A beam is a plain tuple for speed: (score, flex_loss, used, request, mask, slots_left,
# trail, future, gain). ``used[e]`` counts calls given to engine e so far;
# ``request``/``mask`` are the current request and its narrowed C(r) (requests are adjacent
# in queue order, so only the current one can still narrow); ``trail`` is a linked list
# (call index, engine, mask, previous) of the choices made. flex_loss sums, over requests,
# the share of C(r) given up. ``gain`` is the forecast throughput gain of the choices;
# ``score`` adds each request's lookahead credit, ``future`` being the current request's.
_Trail = tuple[int, int, Mask, "_Trail"] | None
_Beam = tuple[float, float, tuple[int, ...], str, Mask, int, _Trail, float, float]


class _Lookahead:
    """Best gain a request's open stages could still add under a narrowed C(r), at this
    round's per-model prices; memoised, since a round sees few distinct C(r)s."""

    def __init__(self, engines: Sequence[EngineSlots], enabled: bool) -> None:
        self.enabled = enabled
        self.price: dict[str, float] = {}
        for e in engines:
            if e.gains:
                self.price[e.model] = max(self.price.get(e.model, 0.0), e.gains[0])
        self._by_level: dict[tuple[int, tuple[int, ...]], list[tuple[float, Mask]]] = {}
        self._by_stages: dict[tuple[int, tuple[int, ...]], npt.NDArray[np.float64]] = {}
        self._table_prices: dict[int, list[npt.NDArray[np.float64]]] = {}

    def open_stages(self, call: QueuedCall, queued: set[int]) -> tuple[int, ...]:
        """The request's stages that are not in this round's queue (those get their real
        gain in the beam) and that C(r) has not pinned to one model yet (pinned ones,
        dispatched or fixed by the router, weigh the same in every choice)."""
        if not self.enabled:
            return ()
        return tuple(
            s
            for s, masks in enumerate(call.table.stage_masks)
            if s not in queued and sum(1 for m in masks if call.mask & m) > 1
        )

    def credit(self, table: WorkflowTable, stages: tuple[int, ...], mask: Mask) -> float:
        if not stages:
            return 0.0
        # The best level (value, configurations at that value) the mask reaches: a few
        # big-int ANDs, where the values are few because stages share their models' prices.
        for value, level in self._levels(table, stages):
            if mask & level:
                return value
        return 0.0

    def _levels(self, table: WorkflowTable, stages: tuple[int, ...]) -> list[tuple[float, Mask]]:
        key = (id(table), stages)
        got = self._by_level.get(key)
        if got is None:
            levels: dict[float, Mask] = {}
            for i, v in enumerate(self._values(table, stages).tolist()):
                levels[v] = levels.get(v, 0) | (1 << i)
            got = self._by_level[key] = sorted(levels.items(), reverse=True)
        return got

    def _values(self, table: WorkflowTable, stages: tuple[int, ...]) -> npt.NDArray[np.float64]:
        """Per configuration, the summed price of its models at ``stages``."""
        key = (id(table), stages)
        values = self._by_stages.get(key)
        if values is None:
            prices = self._prices(table)
            values = self._by_stages[key] = sum(
                (prices[s][table.model_index[:, s]] for s in stages),
                start=np.zeros(table.size),
            )
        return values

    def _prices(self, table: WorkflowTable) -> list[npt.NDArray[np.float64]]:
        got = self._table_prices.get(id(table))
        if got is None:
            got = self._table_prices[id(table)] = [
                np.array([self.price.get(m, 0.0) for m in models]) for models in table.stage_models
            ]
        return got


def plan_round(
    calls: Sequence[QueuedCall], engines: Sequence[EngineSlots], lookahead: bool = True
) -> RoundPlan:
    order = queue_order(calls)
    by_model: dict[str, list[int]] = {}
    for i, e in enumerate(engines):
        if e.free:
            by_model.setdefault(e.model, []).append(i)
    free = tuple(e.free for e in engines)
    gains = [e.gains for e in engines]
    ahead = _Lookahead(engines, lookahead)
    queued: dict[str, set[int]] = {}
    for c in order:
        queued.setdefault(c.request, set()).add(c.stage)
    beams: list[_Beam] = [(0.0, 0.0, (0,) * len(engines), "", 0, sum(free), None, 0.0, 0.0)]
    for ci, call in enumerate(order):
        if not any(b[5] for b in beams):
            break  # the fleet is full in every beam: the rest are skipped
        # The models this call could use at all this round, with their replicas; checked
        # once here rather than once per beam.
        options = [
            (smask, ids)
            for model, smask in zip(
                call.table.stage_models[call.stage],
                call.table.stage_masks[call.stage],
                strict=True,
            )
            if (ids := by_model.get(model)) is not None and call.mask & smask
        ]
        stages = ahead.open_stages(call, queued[call.request])
        beams = _step(beams, ci, call, options, free, gains, ahead, stages)
    return _plan(order, engines, beams[0])


def _step(
    beams: list[_Beam],
    ci: int,
    call: QueuedCall,
    options: list[tuple[Mask, list[int]]],
    free: tuple[int, ...],
    gains: list[tuple[float, ...]],
    ahead: _Lookahead,
    stages: tuple[int, ...],
) -> list[_Beam]:
    cmask, creq, table = call.mask, call.request, call.table
    whole = cmask.bit_count() or 1
    # Beams mostly share the request's narrowed C(r): look each one's credit up once.
    credits: dict[Mask, float] = {}
    # Candidates stay small tuples until chosen: (score, -flex_loss, beam, engine, mask,
    # future credit, gain).
    cands: list[tuple[float, float, int, int, Mask, float, float]] = []
    for bi, (score, flex, used, req, bmask, _, _, fut, gain) in enumerate(beams):
        same = req == creq
        base = (bmask & cmask) if same else cmask
        # The current request's credit is replaced by the narrower one; a finished
        # request's credit stays in the score.
        kept_score = score - fut if same else score
        kept = base.bit_count()
        extended = False
        for smask, ids in options:
            nm = base & smask
            if not nm:
                continue
            # Replica choice within a model: the one with most free slots left.
            best, best_left = -1, 0
            for ei in ids:
                left = free[ei] - used[ei]
                if left > best_left:
                    best, best_left = ei, left
            if best < 0:
                continue
            g = gains[best][used[best]]
            f = credits.get(nm)
            if f is None:
                f = credits[nm] = ahead.credit(table, stages, nm)
            flex_loss = flex + (kept - nm.bit_count()) / whole
            cands.append((kept_score + g + f, -flex_loss, bi, best, nm, f, gain + g))
            extended = True
        if not extended:
            f = fut if same else 0.0
            cands.append((kept_score + f, -flex, bi, -1, base, f, gain))
    # Stable sort, descending: ties keep beam order, then the stage's model order.
    cands.sort(key=_RANK, reverse=True)
    out: list[_Beam] = []
    seen: set[tuple[tuple[int, ...], Mask]] = set()
    width = call.width
    for score, negflex, bi, ei, nm, f, gain in cands:
        _, _, used, _, _, left, trail, _, _ = beams[bi]
        if ei >= 0:
            used = (*used[:ei], used[ei] + 1, *used[ei + 1 :])
            left -= 1
            trail = (ci, ei, nm, trail)
        # Same slots used and same C(r) for the current request: the same future, so
        # only the best-ranked of them is worth a place in the beam.
        state = (used, nm)
        if state in seen:
            continue
        seen.add(state)
        out.append((score, -negflex, used, creq, nm, left, trail, f, gain))
        if len(out) >= width:
            break
    return out


_RANK = itemgetter(0, 1)


def _plan(order: list[QueuedCall], engines: Sequence[EngineSlots], best: _Beam) -> RoundPlan:
    picked: dict[int, Assignment] = {}
    trail = best[6]
    while trail is not None:
        ci, ei, nm, trail = trail
        call, engine = order[ci], engines[ei]
        picked[call.call_id] = Assignment(call.call_id, engine.model, engine.engine_id, nm)
    served = {e.model for e in engines}
    # Per (table, stage), the configurations some healthy engine could serve there.
    reach: dict[tuple[int, int], Mask] = {}

    def reachable(c: QueuedCall) -> Mask:
        key = (id(c.table), c.stage)
        got = reach.get(key)
        if got is None:
            got = reach[key] = sum(
                (
                    sm
                    for m, sm in zip(
                        c.table.stage_models[c.stage], c.table.stage_masks[c.stage], strict=True
                    )
                    if m in served
                ),
                start=0,
            )
        return got

    skipped = [c.call_id for c in order if c.call_id not in picked]
    unservable = [c.call_id for c in order if c.call_id not in picked and not c.mask & reachable(c)]
    assignments = tuple(picked[c.call_id] for c in order if c.call_id in picked)
    return RoundPlan(assignments, tuple(skipped), tuple(unservable), best[8])
