"""The async shell: queue, coalesced rounds, leases, cancellation, back-pressure."""

from __future__ import annotations

import asyncio

import pytest

from aragog.config import SchedulerConfig, WorkflowPolicyConfig
from aragog.fleet.snapshot import FleetSnapshot
from aragog.scheduler.base import NoCapacity, StageCall
from aragog.scheduler.capacity import EngineProfile, engine_slots, smooth
from aragog.scheduler.curves import default_curve
from aragog.scheduler.jit import JitScheduler, Lease, QueueFull
from aragog.scheduler.policies import QueuedPolicy
from aragog.state import MemoryStore, RequestState
from aragog.telemetry import Metrics
from tests.scheduler.fleet import snapshot, spec, table

COST = {"small": 1.0, "large": 8.0}
ONE = table("one", {"gen": ["small", "large"]})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Env:
    """A scheduler over a fixed two-engine fleet whose loads the test sets."""

    def __init__(self, small: float = 0, large: float = 0, sat: int = 4, **cfg: object) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.fleet = {"s0": ("small", small, 0.1), "l0": ("large", large, 0.1)}
        self.snap: FleetSnapshot = snapshot(self.fleet)
        profiles = {
            "s0": EngineProfile.of(sat, default_curve(sat, COST["small"])),
            "l0": EngineProfile.of(sat, default_curve(sat, COST["large"])),
        }
        # Loads in these tests are other clients' and change in steps: no smoothing.
        cfg = {"load_smoothing": 1.0, **cfg}
        self.sched = JitScheduler(
            lambda: self.snap,
            profiles,
            SchedulerConfig.model_validate(cfg),
            None,
            self.metrics,
            self.clock,
        )
        self.sched.on_snapshot(self.snap)

    def set_load(self, eid: str, load: float, kv: float = 0.1, lagging: bool = False) -> None:
        """A new scrape, as the poller takes one: started now, unless ``lagging`` (started
        at the previous snapshot, so it may still count calls of ours that ended since)."""
        if not lagging:
            self.sched.begin_window()
        model = self.fleet[eid][0]
        self.fleet[eid] = (model, load, kv)
        self.snap = snapshot(self.fleet)
        self.sched.on_snapshot(self.snap)

    def submit(
        self,
        rid: str,
        mask: int,
        arrival: float = 0.0,
        width: int = 4,
        t: object = ONE,
        stage: str = "gen",
    ) -> asyncio.Task[Lease]:
        return asyncio.create_task(self.sched.submit(rid, arrival, t, stage, mask, width))  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_joint_example_through_the_shell() -> None:
    env = Env(small=3, large=0)  # one free slot on the small engine
    a = env.submit("r1", ONE.full, arrival=1.0)
    b = env.submit("r2", ONE.mask_of([("small",)]), arrival=2.0)
    await settle()
    assert (await a).model == "large" and (await b).model == "small"
    text = env.metrics.exposition().decode()
    assert (
        'aragog_scheduler_assignments_total{model="small",stage="gen",workflow="one"} 1.0' in text
    )


async def test_rounds_are_coalesced() -> None:
    env = Env()
    calls = 0
    real = env.sched.round_now

    def counting() -> object:
        nonlocal calls
        calls += 1
        return real()

    env.sched.round_now = counting  # type: ignore[method-assign]
    tasks = [env.submit(f"r{i}", ONE.full) for i in range(6)]
    await settle()
    assert calls == 1 and all(t.done() for t in tasks)


async def test_waits_for_a_slot_then_release_dispatches() -> None:
    env = Env(small=4, large=4)  # both full
    t = env.submit("r1", ONE.full)
    await settle()
    assert not t.done() and len(env.sched) == 1
    env.clock.now += 2.5
    env.set_load("l0", 3)  # one slot frees up on large
    await settle()
    lease = await t
    assert lease.model == "large" and env.sched.ours() == {"l0": 1}
    env.sched.release(lease)
    assert env.sched.ours() == {}
    assert "aragog_scheduler_wait_seconds_sum" in env.metrics.exposition().decode()


async def test_own_leases_count_before_the_scrape_sees_them() -> None:
    env = Env(small=0, large=4, sat=2)
    tasks = [env.submit(f"r{i}", ONE.full) for i in range(3)]
    await settle()
    assert [t.done() for t in tasks] == [True, True, False]  # small holds 2, not 3
    env.sched.release(tasks[0].result())
    await settle()
    assert tasks[2].done()


async def test_a_lagging_scrape_of_our_finished_calls_is_not_other_load() -> None:
    """Two calls of ours run and end; the next scrape still counts them (it read the engine
    before they ended). That must not read as other clients filling the engine."""
    env = Env(small=0, large=4, sat=2)
    first = [env.submit(f"r{i}", ONE.full) for i in range(2)]
    await settle()
    for t in first:
        env.sched.release(t.result())
    env.set_load("s0", 2, lagging=True)  # read while our two ran; they are gone now
    assert env.sched._others["s0"] == 0.0
    again = [env.submit(f"q{i}", ONE.full) for i in range(2)]
    await settle()
    assert all(t.done() for t in again)
    # A scrape begun after ours ended: what it shows is someone else's.
    for t in again:
        env.sched.release(t.result())
    env.set_load("s0", 2)
    assert env.sched._others["s0"] == 2.0


async def test_cancelled_waiter_leaves_queue_and_leaks_nothing() -> None:
    env = Env(small=4, large=4)
    t = env.submit("r1", ONE.full)
    await settle()
    t.cancel()
    await settle()
    assert t.cancelled() and len(env.sched) == 0 and env.sched.live_mask("r1") is None
    # a cancel racing the round that placed it gives the slot back
    env.set_load("s0", 3)
    t2 = env.submit("r2", ONE.full)
    await asyncio.sleep(0)  # the task runs and queues
    env.sched.round_now()  # placed now, before the task resumes
    t2.cancel()
    await settle()
    assert t2.cancelled() and env.sched.ours() == {} and env.sched.live_mask("r2") is None


async def test_full_queue_rejects_with_retry_after() -> None:
    env = Env(small=4, large=4, max_queue=2, retry_after_s=3)
    held = [env.submit(f"r{i}", ONE.full) for i in range(2)]
    await settle()
    with pytest.raises(QueueFull) as info:
        await env.sched.submit("r9", 0.0, ONE, "gen", ONE.full, 4)
    assert info.value.retry_after_s == 3
    for t in held:
        t.cancel()
    await settle()


async def test_no_healthy_engine_for_allowed_models_fails_fast() -> None:
    env = Env()
    env.snap = snapshot({"s0": ("small", 0, 0.1)})
    t = env.submit("r1", ONE.mask_of([("large",)]))
    await settle()
    with pytest.raises(NoCapacity):
        await t


async def test_siblings_in_later_rounds_see_the_narrowed_set() -> None:
    t = table("vote", {"v1": ["small", "large"], "v2": ["small", "large"]})
    mask = t.mask_of([("small", "small"), ("large", "large")])
    env = Env(small=3, large=4)  # one small slot, nothing on large
    first = env.submit("r", mask, t=t, stage="v1")
    second = env.submit("r", mask, t=t, stage="v2")
    await settle()
    assert (await first).model == "small" and not second.done()
    env.set_load("s0", 4)  # the scrape now sees our call too
    env.set_load("l0", 0)  # large frees up, small still full: v2 must wait for small
    await settle()
    assert not second.done()
    env.set_load("s0", 0)
    await settle()
    assert (await second).model == "small"


def test_kv_watermark_and_smoothed_load_set_free_slots() -> None:
    env = Env(small=1, large=0, kv_high_watermark=0.9)
    slots = {
        e.engine_id: e.free
        for e in engine_slots(
            env.snap, {"s0": 1.0}, {}, env.sched._profiles, SchedulerConfig(kv_high_watermark=0.9)
        )
    }
    assert slots == {"s0": 3, "l0": 4}
    full = snapshot({"s0": ("small", 0, 0.95)})
    assert engine_slots(full, {}, {}, env.sched._profiles, SchedulerConfig())[0].free == 0
    # our own leases add to other clients' load
    profiles = env.sched._profiles
    assert engine_slots(env.snap, {"s0": 1.0}, {"s0": 2}, profiles, SchedulerConfig())[0].free == 1


def test_other_clients_load_is_smoothed_ours_is_not() -> None:
    snap = snapshot({"s0": ("small", 6, 0.1)})
    others = smooth({}, snap, {"s0": 2}, alpha=0.5)
    assert others == {"s0": 4.0}  # scraped 6, of which 2 are ours
    assert smooth(others, snapshot({"s0": ("small", 2, 0.1)}), {"s0": 2}, 0.5) == {"s0": 2.0}


async def test_policies_bind_as_documented() -> None:
    wf = spec("two", {"a": ["small", "large"], "b": ["small", "large"]}, [("a", "b")])
    t = table("two", {"a": ["small", "large"], "b": ["small", "large"]}, [("a", "b")])
    store = MemoryStore(60, 100)
    env = Env(small=3, large=0)
    viable = frozenset({("small", "large"), ("large", "small"), ("large", "large")})

    async def run(policy: str, rid: str, **extra: object) -> tuple[str, RequestState | None]:
        pc = WorkflowPolicyConfig.model_validate({"policy": policy, **extra})
        pol = QueuedPolicy(env.sched, t, pc, COST, store)
        st = await store.update(
            "two", rid, lambda s: s or RequestState("two", rid, 0.0, viable=viable)
        )
        lease = await pol.acquire(StageCall(wf, "a", st))
        pol.release(lease)
        return lease.model, await store.get("two", rid)

    assert (await run("per-input", "p1"))[0] == "small"  # cheapest: (small, large)
    assert (await run("per-workflow", "p2"))[0] == "large"  # all-largest by default
    model, _ = await run("per-workflow", "p3", configuration={"a": "small", "b": "small"})
    assert model == "small"
    env.set_load("s0", 4)  # small saturated: load-aware binding avoids it
    model, st = await run("per-input-load", "p4")
    assert model == "large" and st is not None and st.viable == {("large", "large")}
