"""Tagged calls through the gateway get C(r) computed once per request, and the scheduler
keeps every stage inside it (fake engines; the router is a real trained artifact)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aragog.api.app import create_app
from aragog.api.gateway import Gateway
from aragog.config import ConfigError, parse_config
from aragog.router.embedders import HashingEmbedder
from aragog.router.mlp import TrainParams
from aragog.router.train import TrainOptions, train_router
from tests.fake_engine import FakeEngine, HostRouter
from tests.router.conftest import COST, cascade_spec, toy_labels

SPEC = cascade_spec()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    opts = TrainOptions(folds=2, params=TrainParams(hidden=16, max_epochs=8))
    art, _ = asyncio.run(train_router(toy_labels(), SPEC, COST, HashingEmbedder(256), opts))
    path = tmp_path_factory.mktemp("router") / "toy.npz"
    art.save(path)
    return path


def config(artifact: Path, embedder: str = "hashing:256") -> dict[str, object]:
    return {
        "fleet": {"models": [
            {"name": m, "cost": c, "engines": [{"url": f"http://{m}"}]} for m, c in COST.items()
        ]},
        "workflows": {SPEC.name: {"policy": "aragog", "router": {
            "artifact": str(artifact), "embedder": embedder}}},
    }


@pytest.fixture
async def gateway(artifact: Path) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    engines = {m: FakeEngine(m).app() for m in COST}
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=HostRouter(engines)))
    app = create_app(parse_config(config(artifact)), {SPEC.name: SPEC}, client=upstream,
                     poll=False)
    gw: Gateway = app.state.gateway
    await gw.poller.poll_once()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as client:
        yield gw, client


async def call(client: httpx.AsyncClient, rid: str, stage: str, text: str) -> httpx.Response:
    resp = await client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": text}],
        "metadata": {"aragog_workflow": SPEC.name, "aragog_request_id": rid,
                     "aragog_stage": stage}})
    assert resp.status_code == 200, resp.text
    return resp


async def test_routed_once_per_request_and_stages_stay_inside(
    gateway: tuple[Gateway, httpx.AsyncClient],
) -> None:
    gw, client = gateway
    texts = {"r1": "easy sum question 3", "r2": "hard tricky proof question 4"}
    for rid, text in texts.items():
        solvers = await asyncio.gather(call(client, rid, "solver_a", text),
                                       call(client, rid, "solver_b", text))
        judge = await call(client, rid, "judge", "the solvers disagree")
        state = await gw.store.get(SPEC.name, rid)
        assert state is not None and state.viable
        chosen = tuple(r.headers["x-aragog-model"] for r in [*solvers, judge])
        assert chosen in state.viable
    metrics = (await client.get("/metrics")).text
    assert f'aragog_router_latency_seconds_count{{workflow="{SPEC.name}"}} 2.0' in metrics
    assert f'aragog_router_viable_share_count{{workflow="{SPEC.name}"}} 2.0' in metrics
    assert len(gw.routing) == 0  # routing tasks are not kept once C(r) is stored


def test_artifact_mismatch_is_a_config_error(artifact: Path) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(parse_config(config(artifact, "hashing:512")), {SPEC.name: SPEC})
    assert info.value.problems[0].startswith(f"workflows[{SPEC.name}].router: ")
