"""The Redis request store against a real redis-server, and two gateways sharing it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest

from aragog.state import RequestState
from aragog.state_redis import RedisStore, decode, encode
from aragog.workflow.spec import WorkflowSpec
from tests.reliability.faults import CONFIG, Env

pytestmark = pytest.mark.timeout(60)

WORKFLOW = WorkflowSpec.model_validate({
    "name": "wf",
    "stages": [{"name": "gen", "models": ["small", "large"]},
               {"name": "judge", "models": ["small", "large"]}],
    "edges": [["gen", "judge"]],
})


def test_roundtrip() -> None:
    st = RequestState("wf", "r", 12.5, viable=frozenset({("a", "b"), ("c", "d")}))
    st = st.with_choice("gen", "a").with_done("gen", "a")
    assert decode(encode(st)) == st
    assert decode(encode(RequestState("wf", "r", 1.0))).viable is None


async def test_concurrent_updates_from_two_clients_are_atomic(redis_url: str) -> None:
    a = RedisStore(redis_url, 60, 1000, prefix=uuid.uuid4().hex)
    b = RedisStore(redis_url, 60, 1000, prefix=a._prefix)

    def bump(s: RequestState | None) -> RequestState:
        s = s or RequestState("wf", "r", 0.0)
        return replace(s, calls=s.calls + 1)

    await asyncio.gather(*(s.update("wf", "r", bump) for _ in range(40) for s in (a, b)))
    got = await a.get("wf", "r")
    assert got is not None and got.calls == 80
    assert len(a) == 1
    await a.aclose()
    await b.aclose()


async def test_ttl_and_cap_bound_the_store(redis_url: str) -> None:
    s = RedisStore(redis_url, 0.3, 5, prefix=uuid.uuid4().hex)
    await s.update("wf", "short", lambda x: x or RequestState("wf", "short", 0.0))
    await asyncio.sleep(0.5)
    assert await s.get("wf", "short") is None
    s2 = RedisStore(redis_url, 60, 5, prefix=uuid.uuid4().hex)
    for i in range(300):
        await s2.update("wf", str(i), lambda x, i=i: x or RequestState("wf", str(i), 0.0))
    assert len(s2) <= 5 + 300 - 256  # trimmed to the cap at the 256th update
    assert await s2.get("wf", "299") is not None and await s2.get("wf", "0") is None
    await s.aclose()
    await s2.aclose()


def _replica(redis_url: str, prefix: str) -> Env:
    cfg: dict[str, Any] = {
        **CONFIG,
        "workflows": {"wf": {"policy": "aragog"}},
        "store": {"backend": "redis", "redis_url": redis_url, "key_prefix": prefix},
    }
    return Env(cfg, workflows={"wf": WORKFLOW})


async def test_two_gateways_agree_on_prefix_consistency(redis_url: str) -> None:
    prefix = uuid.uuid4().hex
    one, two = _replica(redis_url, prefix), _replica(redis_url, prefix)
    for r in (one, two):
        await r.gw.poller.poll_once()

    async def call(r: Env, rid: str, stage: str) -> httpx.Response:
        tags = {"X-Aragog-Workflow": "wf", "X-Aragog-Request-Id": rid, "X-Aragog-Stage": stage}
        return await r.chat(tags, max_tokens=4)

    for i in range(30):
        rid = f"r{i}"
        # Three calls of one stage race on both replicas, then the next stage alternates.
        resps = await asyncio.gather(call(one, rid, "gen"), call(two, rid, "gen"),
                                     call(two, rid, "gen"))
        assert all(r.status_code == 200 for r in resps), [r.text for r in resps]
        models = {r.headers["x-aragog-model"] for r in resps}
        assert len(models) == 1, (rid, models)
        judge = await call(one if i % 2 else two, rid, "judge")
        assert judge.status_code == 200
        state = await one.gw.store.get("wf", rid)
        assert state is not None and state.calls == 4
        assert dict(state.done) == {"gen": models.pop(), "judge": judge.headers["x-aragog-model"]}
    for r in (one, two):
        assert r.inflight_total() == 0
        await r.gw.aclose()


async def test_replica_follows_a_choice_made_elsewhere(redis_url: str) -> None:
    """Replica one, with its small engines full, puts the stage on large; replica two,
    which on its own would choose small, must follow the stored choice."""
    prefix = uuid.uuid4().hex
    one, two = _replica(redis_url, prefix), _replica(redis_url, prefix)
    one.engines["small-a"].running = one.engines["small-b"].running = 20
    for r in (one, two):
        await r.gw.poller.poll_once()
    tags = {"X-Aragog-Workflow": "wf", "X-Aragog-Request-Id": "follow", "X-Aragog-Stage": "gen"}
    alone = await two.chat({**tags, "X-Aragog-Request-Id": "alone"})
    assert alone.headers["x-aragog-model"] == "small"
    first = await one.chat(tags)
    assert first.headers["x-aragog-model"] == "large"
    second = await two.chat(tags)
    assert second.status_code == 200 and second.headers["x-aragog-model"] == "large"
    for r in (one, two):
        await r.gw.aclose()
