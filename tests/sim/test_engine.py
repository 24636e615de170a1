"""The engine: conservation (every call finishes once, with its tokens), preemption when KV
runs out, and step timing that is exactly the model's."""

from __future__ import annotations

import dataclasses
import random

import pytest

from aragog.sim.engine import EngineParams, Seq, SimEngine
from tests.sim.test_perf import toy


def drain(eng: SimEngine, seqs: list[Seq], spread: float = 0.0) -> tuple[list[Seq], float]:
    """Submit ``seqs`` (at multiples of ``spread``), run until idle."""
    pending = sorted(((i * spread, s) for i, s in enumerate(seqs)), key=lambda p: p[0])
    done: list[Seq] = []
    now = 0.0
    while pending or eng.next_time is not None:
        nt = eng.next_time
        if pending and (nt is None or pending[0][0] <= nt):
            now, s = pending.pop(0)
            eng.submit(s, now)
        else:
            assert nt is not None
            now = nt
            done += eng.finish_step(now)
    return done, now


def test_single_call_timing_is_the_models() -> None:
    m = toy()
    eng = SimEngine("e", m)
    done, end = drain(eng, [Seq("a", 100, 3)])
    assert [s.payload for s in done] == ["a"]
    expected = (
        m.step_s(100, 1, 0, [(100, 0)])  # prefill samples token 1
        + m.step_s(1, 1, 100, [])  # token 2 reads the 100-token prompt
        + m.step_s(1, 1, 101, [])  # token 3
    )
    assert end == pytest.approx(expected)
    assert done[0].first_token == pytest.approx(m.step_s(100, 1, 0, [(100, 0)]))


@pytest.mark.parametrize("capacity", [10_000, 600])
def test_every_call_finishes_once(capacity: int) -> None:
    rng = random.Random(7)
    m = dataclasses.replace(toy(), kv_capacity_tokens=capacity)
    eng = SimEngine("e", m, EngineParams(max_num_seqs=16, max_batched_tokens=256))
    seqs = [Seq(i, rng.randint(1, 300), rng.randint(1, 80)) for i in range(120)]
    done, _ = drain(eng, seqs, spread=0.001)
    assert sorted(s.payload for s in done) == list(range(120))
    assert all(s.gen == s.out for s in done)
    assert eng.running == 0 and eng.queued == 0 and eng.kv_tokens() == 0
    if capacity < 1000:
        assert eng.stats.preemptions > 0
    else:
        assert eng.stats.preemptions == 0
        assert eng.stats.tokens_out == sum(s.out for s in seqs)


def test_batch_limit_and_chunked_prefill() -> None:
    eng = SimEngine("e", toy(), EngineParams(max_num_seqs=4, max_batched_tokens=64))
    for i in range(6):
        eng.submit(Seq(i, 100, 5), 0.0)
    assert eng.running == 1 and eng.queued == 5  # 64-token budget: one chunk of the first
    t = eng.next_time
    assert t is not None
    eng.finish_step(t)
    assert eng.running == 2 and eng.queued == 4  # 36 more of the first, 28 of the second
    assert 0 < eng.kv_usage() <= 1
