"""Queued policies wired into the gateway, against in-process fake engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aragog.api.app import create_app
from aragog.api.gateway import Gateway
from aragog.config import ConfigError, parse_config
from aragog.state import RequestState
from tests.fake_engine import FakeEngine, HostRouter
from tests.scheduler.fleet import spec

WORKFLOW = spec(
    "wf",
    {"gen": ["small", "large"], "judge": ["small", "large"]},
    [("gen", "judge")],
)


def config(policy: str = "aragog", **sched: Any) -> dict[str, Any]:
    return {
        "fleet": {
            "models": [
                {"name": "small", "cost": 1, "engines": [{"url": "http://small"}]},
                {"name": "large", "cost": 8, "engines": [{"url": "http://large"}]},
            ]
        },
        "workflows": {"wf": {"policy": policy}},
        "scheduler": {
            "load_smoothing": 1.0,
            "capacity": {"small": {"saturation": 2}, "large": {"saturation": 2}},
            **sched,
        },
    }


class Env:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.engines = {h: FakeEngine(h) for h in ("small", "large")}
        upstream = httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=HostRouter({h: e.app() for h, e in self.engines.items()})
            )
        )
        self.app = create_app(parse_config(cfg), {"wf": WORKFLOW}, client=upstream, poll=False)
        self.gw: Gateway = self.app.state.gateway
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gw"
        )

    async def call(self, rid: str, stage: str) -> httpx.Response:
        headers = {"X-Aragog-Workflow": "wf", "X-Aragog-Request-Id": rid, "X-Aragog-Stage": stage}
        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        return await self.client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env(config())
    await e.gw.poller.poll_once()
    yield e
    await e.client.aclose()


async def test_aragog_picks_free_small_then_moves_to_large(env: Env) -> None:
    resp = await env.call("r1", "gen")
    assert resp.status_code == 200 and resp.headers["x-aragog-model"] == "small"
    env.engines["small"].running = 2  # another client saturates the small engine
    await env.gw.poller.poll_once()
    resp = await env.call("r1", "judge")
    assert resp.headers["x-aragog-model"] == "large"
    state = await env.gw.store.get("wf", "r1")
    assert state is not None and dict(state.chosen) == {"gen": "small", "judge": "large"}
    assert env.gw.scheduler.ours() == {} and len(env.gw.scheduler) == 0  # all released
    metrics = (await env.client.get("/metrics")).text
    for name in (
        "aragog_scheduler_round_seconds_bucket",
        "aragog_scheduler_queue_length",
        "aragog_scheduler_assignments_total",
        "aragog_scheduler_wait_seconds_bucket",
    ):
        assert name in metrics, name


async def test_later_stage_stays_inside_viable_set(env: Env) -> None:
    viable = frozenset({("small", "large"), ("large", "small")})
    await env.gw.store.update("wf", "r2", lambda s: RequestState("wf", "r2", 0.0, viable=viable))
    assert (await env.call("r2", "gen")).headers["x-aragog-model"] == "small"
    # small has room, but C(r) only allows large after small
    assert (await env.call("r2", "judge")).headers["x-aragog-model"] == "large"


async def test_full_queue_is_429_with_retry_after() -> None:
    e = Env(config(max_queue=1, retry_after_s=2.5))
    for eng in e.engines.values():
        eng.running = 2  # everything saturated: calls queue
    await e.gw.poller.poll_once()
    first = asyncio.create_task(e.call("a", "gen"))
    for _ in range(20):
        await asyncio.sleep(0)
        if len(e.gw.scheduler):
            break
    resp = await e.call("b", "gen")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
    assert resp.json()["error"]["code"] == "queue_full"
    e.engines["large"].running = 0  # capacity frees: the queued call goes through
    await e.gw.poller.poll_once()
    assert (await first).headers["x-aragog-model"] == "large"
    await e.client.aclose()


async def test_static_configuration_is_checked() -> None:
    cfg = config("per-workflow")
    cfg["workflows"]["wf"]["configuration"] = {"gen": "small", "judge": "huge"}
    with pytest.raises(ConfigError) as info:
        Env(cfg)
    assert "workflows[wf].configuration[judge]: 'huge' is not a candidate" in str(info.value)


@pytest.mark.parametrize(
    ("policy", "models"),
    [
        ("greedy", ["small", "small"]),
        ("per-input", ["small", "small"]),
        ("per-workflow", ["large", "large"]),
        ("per-input-load", ["small", "small"]),
        ("largest", ["large", "large"]),
    ],
)
async def test_every_policy_serves(policy: str, models: list[str]) -> None:
    e = Env(config(policy))
    await e.gw.poller.poll_once()
    got = [(await e.call("r", s)).headers["x-aragog-model"] for s in ("gen", "judge")]
    assert got == models
    await e.client.aclose()
