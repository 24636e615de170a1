"""The pure round: table-driven cases, the paper's joint-scheduling example, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aragog.scheduler.round import EngineSlots, QueuedCall, RoundPlan, plan_round, queue_order
from aragog.scheduler.tables import WorkflowTable
from tests.scheduler.fleet import slots, table

ONE = table("one", {"gen": ["small", "large"]})


def call(
    cid: int,
    t: WorkflowTable,
    stage: int,
    mask: int,
    request: str | None = None,
    arrival: float | None = None,
    width: int = 4,
) -> QueuedCall:
    return QueuedCall(
        cid, request or f"r{cid}", float(cid if arrival is None else arrival), t, stage, mask, width
    )


def only(t: WorkflowTable, *configs: tuple[str, ...]) -> int:
    return t.mask_of(configs)


def joint_example(width: int) -> RoundPlan:
    """Two requests, one free slot on the small engine (and room on the large one).
    r1 (first) may use either model, r2 only the small one."""
    calls = [
        call(0, ONE, 0, ONE.full, width=width),
        call(1, ONE, 0, only(ONE, ("small",)), width=width),
    ]
    engines = [slots("s0", "small", 1, gain=3.0), slots("l0", "large", 4, gain=1.0)]
    return plan_round(calls, engines)


def test_joint_choice_serves_both() -> None:
    plan = joint_example(width=4)
    assert [(a.call_id, a.model) for a in plan.assignments] == [(0, "large"), (1, "small")]
    assert plan.skipped == () and plan.gain == 4.0


def test_greedy_serves_one_and_skips_the_other() -> None:
    plan = joint_example(width=1)
    assert [(a.call_id, a.model) for a in plan.assignments] == [(0, "small")]
    assert plan.skipped == (1,) and plan.unservable == ()


def test_skipped_call_does_not_block_the_queue() -> None:
    calls = [call(0, ONE, 0, only(ONE, ("large",))), call(1, ONE, 0, ONE.full)]
    plan = plan_round(calls, [slots("s0", "small", 1), slots("l0", "large", 0)])
    assert [a.call_id for a in plan.assignments] == [1] and plan.skipped == (0,)


def test_unservable_when_no_engine_serves_any_allowed_model() -> None:
    calls = [call(0, ONE, 0, only(ONE, ("large",)))]
    plan = plan_round(calls, [slots("s0", "small", 3)])
    assert plan.skipped == (0,) and plan.unservable == (0,)


def test_parallel_stages_of_a_request_stay_consistent_in_one_round() -> None:
    t = table("vote", {"v1": ["small", "large"], "v2": ["small", "large"]})
    # C(r): both voters on the same model; one small slot cannot take both
    mask = only(t, ("small", "small"), ("large", "large"))
    calls = [call(0, t, 0, mask, "r"), call(1, t, 1, mask, "r", arrival=0)]
    plan = plan_round(calls, [slots("s0", "small", 1, 1.5), slots("l0", "large", 2, 1.0)])
    assert [a.model for a in plan.assignments] == ["large", "large"]
    # ...unless small's single call is worth more than both on large
    plan = plan_round(calls, [slots("s0", "small", 1, 5.0), slots("l0", "large", 2, 1.0)])
    assert [a.model for a in plan.assignments] == ["small"] and plan.skipped == (1,)


def test_lookahead_charges_a_choice_for_the_stages_it_pins() -> None:
    """The aggregator is not queued yet. A voter on the small model would pin it to the
    large one, whose engine is nearly saturated; on the medium model it leaves the
    aggregator the small one. This round's gain alone prefers small; the lookahead not."""
    t = table(
        "vote", {"v": ["small", "medium", "large"], "agg": ["small", "medium", "large"]},
        edges=[("v", "agg")],
    )
    mask = only(t, ("small", "large"), ("medium", "small"))
    engines = [
        slots("s0", "small", 2, 3.0), slots("m0", "medium", 2, 1.0), slots("l0", "large", 1, 0.1)
    ]
    ahead = plan_round([call(0, t, 0, mask)], engines)
    assert [a.model for a in ahead.assignments] == ["medium"] and ahead.gain == 1.0
    myopic = plan_round([call(0, t, 0, mask)], engines, lookahead=False)
    assert [a.model for a in myopic.assignments] == ["small"]
    # With room on the large engine pinning costs nothing, and the small model wins again.
    roomy = [*engines[:2], slots("l0", "large", 4, 3.0)]
    assert [a.model for a in plan_round([call(0, t, 0, mask)], roomy).assignments] == ["small"]


def test_lookahead_ignores_stages_queued_in_the_same_round() -> None:
    """Queued siblings get their real gain in the beam; crediting them again as future
    would count them twice."""
    t = table("two", {"a": ["small", "large"], "b": ["small", "large"]})
    mask = only(t, ("small", "large"), ("large", "small"))
    calls = [call(0, t, 0, mask, "r"), call(1, t, 1, mask, "r", arrival=0)]
    engines = [slots("s0", "small", 1, 2.0), slots("l0", "large", 1, 1.0)]
    assert plan_round(calls, engines).gain == plan_round(calls, engines, lookahead=False).gain


def test_ties_go_to_flexibility() -> None:
    t = table("two", {"a": ["small", "large"], "b": ["small", "large"]})
    # choosing small at a keeps 1 of 3 configurations, large keeps 2 of 3
    mask = only(t, ("small", "large"), ("large", "small"), ("large", "large"))
    plan = plan_round([call(0, t, 0, mask)], [slots("s0", "small", 1), slots("l0", "large", 1)])
    assert plan.assignments[0].model == "large"


def test_queue_order_fifo_by_request_then_depth() -> None:
    t = table("chain", {"a": ["m"], "b": ["m"], "c": ["m"]}, [("a", "b"), ("b", "c")])
    calls = [
        call(0, t, 2, t.full, "late", 5.0),
        call(1, t, 2, t.full, "early", 1.0),
        call(2, t, 0, t.full, "early", 1.0),
        call(3, t, 1, t.full, "early", 1.0),
    ]
    assert [c.call_id for c in queue_order(calls)] == [2, 3, 1, 0]


def test_replica_with_most_free_slots() -> None:
    plan = plan_round(
        [call(0, ONE, 0, only(ONE, ("small",)))], [slots("s0", "small", 1), slots("s1", "small", 3)]
    )
    assert plan.assignments[0].engine_id == "s1"


# -- properties ---------------------------------------------------------------------------

MODELS = ["a", "b", "c"]
TABLES = [
    table("w1", {"x": ["a", "b", "c"]}),
    table("w2", {"x": ["a", "b"], "y": ["b", "c"]}, [("x", "y")]),
    table(
        "w3",
        {"p": ["a", "b", "c"], "q": ["a", "b", "c"], "j": ["a", "c"]},
        [("p", "j"), ("q", "j")],
    ),
]


@st.composite
def rounds(draw: st.DrawFn) -> tuple[list[QueuedCall], list[EngineSlots]]:
    calls: list[QueuedCall] = []
    for r in range(draw(st.integers(0, 8))):
        t = draw(st.sampled_from(TABLES))
        mask = draw(st.integers(1, t.full))  # any non-empty C(r)
        width = draw(st.integers(1, 5))
        stages = draw(st.lists(st.integers(0, len(t.stage_models) - 1), min_size=1, max_size=3))
        arrival = draw(st.floats(0, 10))
        calls += [
            QueuedCall(len(calls) + i, f"r{r}", arrival, t, s, mask, width)
            for i, s in enumerate(stages)
        ]
    engines = [
        EngineSlots(
            f"e{i}",
            draw(st.sampled_from(MODELS)),
            tuple(draw(st.lists(st.floats(0, 10), max_size=4))),
        )
        for i in range(draw(st.integers(0, 5)))
    ]
    return calls, engines


@settings(max_examples=200, deadline=None)
@given(rounds())
def test_round_properties(case: tuple[list[QueuedCall], list[EngineSlots]]) -> None:
    calls, engines = case
    plan = plan_round(calls, engines)
    by_id = {c.call_id: c for c in calls}
    picked = {a.call_id: a for a in plan.assignments}
    assert set(picked).isdisjoint(plan.skipped)
    assert set(picked) | set(plan.skipped) == set(by_id)
    assert set(plan.unservable) <= set(plan.skipped)
    used = {e.engine_id: 0 for e in engines}
    model_of = {e.engine_id: e.model for e in engines}
    # replay in queue order: C(r) as the round narrowed it, request by request
    current: dict[str, int] = {}
    for c in queue_order(calls):
        before = current.get(c.request, c.mask) & c.mask
        a = picked.get(c.call_id)
        if a is None:  # fits nowhere: every allowed model's engines are full at the end
            for m in c.table.allowed(before, c.stage):
                for e in engines:
                    if e.model == m:
                        assert e.free == sum(
                            1 for x in plan.assignments if x.engine_id == e.engine_id
                        ), (c, m)
            continue
        assert model_of[a.engine_id] == a.model
        assert a.model in c.table.allowed(before, c.stage)  # allowed by the viable set
        assert a.mask and a.mask == before & c.table.stage_mask(c.stage, a.model)
        current[c.request] = a.mask  # never empty, and only ever narrows
        used[a.engine_id] += 1
    for e in engines:
        assert used[e.engine_id] <= e.free


def exhaustive(calls: list[QueuedCall], engines: list[EngineSlots]) -> float:
    """Best total gain under the round's rules, by plain depth-first search."""
    order = queue_order(calls)

    def go(i: int, used: tuple[int, ...], masks: dict[str, int]) -> float:
        if i == len(order):
            return 0.0
        c = order[i]
        base = masks.get(c.request, c.mask) & c.mask
        best = None
        for m in c.table.allowed(base, c.stage):
            free = [k for k, e in enumerate(engines) if e.model == m and used[k] < e.free]
            if not free:
                continue
            k = max(free, key=lambda k: engines[k].free - used[k])
            nm = base & c.table.stage_mask(c.stage, m)
            u = (*used[:k], used[k] + 1, *used[k + 1 :])
            g = engines[k].gains[used[k]] + go(i + 1, u, {**masks, c.request: nm})
            best = g if best is None else max(best, g)
        return go(i + 1, used, {**masks, c.request: base}) if best is None else best

    return go(0, (0,) * len(engines), {})


@settings(max_examples=200, deadline=None)
@given(rounds())
def test_wide_beam_is_exhaustive(case: tuple[list[QueuedCall], list[EngineSlots]]) -> None:
    calls, engines = case
    wide = [
        QueuedCall(c.call_id, c.request, c.arrival, c.table, c.stage, c.mask, 10_000) for c in calls
    ]
    assert plan_round(wide, engines, lookahead=False).gain == pytest.approx(
        exhaustive(calls, engines)
    )
