"""One scheduling round as a pure function: (queued calls with their C(r), free slots and
marginal gains per engine) -> assignments. No clock, no I/O, no mutation of its inputs, so
the gateway, the tests and the simulator all drive exactly this code.

Beam search over the queue in order. A partial assignment is extended with every model the
call may still use (the projection of its request's C(r) at that stage, narrowed by the
models this same beam already gave the request's other calls) that has a free slot; ranked
by forecast throughput gain, ties by flexibility (least share of C(r) given up). A call that
fits nowhere in a beam is skipped there and never blocks the calls behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

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
    gain: float


def queue_order(calls: Sequence[QueuedCall]) -> list[QueuedCall]:
    """FIFO across requests by arrival; within a request the deepest stage first (longest
    path to a leaf, the critical path); then by arrival of the call. A request's calls end
    up adjacent, which the beam relies on."""
    return sorted(calls, key=lambda c: (c.arrival, c.request, -c.table.depth[c.stage], c.call_id))


# A beam is a plain tuple for speed: (gain, flex_loss, used, request, mask, slots_left,
# trail). ``used[e]`` counts calls given to engine e so far; ``request``/``mask`` are the
# current request and its narrowed C(r) (requests are adjacent in queue order, so only
# the current one can still narrow); ``trail`` is a linked list (call index, engine, mask,
# previous) of the choices made. flex_loss sums, over requests, the share of C(r) given up.
_Trail = tuple[int, int, Mask, "_Trail"] | None
_Beam = tuple[float, float, tuple[int, ...], str, Mask, int, _Trail]


def plan_round(calls: Sequence[QueuedCall], engines: Sequence[EngineSlots]) -> RoundPlan:
    order = queue_order(calls)
    by_model: dict[str, list[int]] = {}
    for i, e in enumerate(engines):
        if e.free:
            by_model.setdefault(e.model, []).append(i)
    free = tuple(e.free for e in engines)
    gains = [e.gains for e in engines]
    beams: list[_Beam] = [(0.0, 0.0, (0,) * len(engines), "", 0, sum(free), None)]
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
        beams = _step(beams, ci, call, options, free, gains)
    return _plan(order, engines, beams[0])


def _step(
    beams: list[_Beam],
    ci: int,
    call: QueuedCall,
    options: list[tuple[Mask, list[int]]],
    free: tuple[int, ...],
    gains: list[tuple[float, ...]],
) -> list[_Beam]:
    cmask, creq = call.mask, call.request
    whole = cmask.bit_count() or 1
    # Candidates stay small tuples until chosen: (gain, -flex_loss, beam, engine, mask).
    cands: list[tuple[float, float, int, int, Mask]] = []
    for bi, (gain, flex, used, req, bmask, _, _) in enumerate(beams):
        base = (bmask & cmask) if req == creq else cmask
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
            cands.append((gain + g, -(flex + (kept - nm.bit_count()) / whole), bi, best, nm))
            extended = True
        if not extended:
            cands.append((gain, -flex, bi, -1, base))
    # Stable sort, descending: ties keep beam order, then the stage's model order.
    cands.sort(key=_RANK, reverse=True)
    out: list[_Beam] = []
    seen: set[tuple[tuple[int, ...], Mask]] = set()
    width = call.width
    for gain, negflex, bi, ei, nm in cands:
        _, _, used, _, _, left, trail = beams[bi]
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
        out.append((gain, -negflex, used, creq, nm, left, trail))
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
    skipped = [c.call_id for c in order if c.call_id not in picked]
    unservable = [
        c.call_id
        for c in order
        if c.call_id not in picked and not served.intersection(c.table.allowed(c.mask, c.stage))
    ]
    assignments = tuple(picked[c.call_id] for c in order if c.call_id in picked)
    return RoundPlan(assignments, tuple(skipped), tuple(unservable), best[0])
