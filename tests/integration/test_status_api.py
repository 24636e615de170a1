"""/status and /status.json against in-process fake engines; the histogram estimate table."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from aragog.api.app import create_app
from aragog.api.gateway import Gateway
from aragog.api.status import histogram_quantile
from aragog.config import parse_config
from aragog.workflow.spec import WorkflowSpec
from tests.fake_engine import FakeEngine, HostRouter

CONFIG = {
    "fleet": {
        "models": [
            {"name": "small", "cost": 1, "engines": [{"url": "http://small"}]},
            {"name": "large", "cost": 8, "engines": [{"url": "http://large"}]},
        ]
    },
}
WORKFLOW = WorkflowSpec.model_validate({
    "name": "wf",
    "stages": [{"name": "gen", "models": ["small", "large"]},
               {"name": "judge", "models": ["small"]}],
    "edges": [["gen", "judge"]],
})


@pytest.fixture
async def env() -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, FakeEngine], Gateway]]:
    engines = {h: FakeEngine(h) for h in ("small", "large")}
    upstream = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=HostRouter({h: e.app() for h, e in engines.items()}))
    )
    app: FastAPI = create_app(parse_config(CONFIG), {"wf": WORKFLOW}, client=upstream, poll=False)
    gw: Gateway = app.state.gateway
    await gw.poller.poll_once()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        yield client, engines, gw
    await upstream.aclose()


async def test_status_json_shows_engines_and_model_mix(
    env: tuple[httpx.AsyncClient, dict[str, FakeEngine], Gateway],
) -> None:
    client, engines, gw = env
    engines["large"].running, engines["large"].waiting = 3, 2
    await gw.poller.poll_once()
    for stage in ("gen", "judge"):
        resp = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Aragog-Workflow": "wf", "X-Aragog-Request-Id": "r1",
                     "X-Aragog-Stage": stage},
        )
        assert resp.status_code == 200, resp.text

    st = (await client.get("/status.json")).json()

    assert st["ready"] is True
    by_model = {e["model"]: e for e in st["engines"]}
    assert set(by_model) == {"small", "large"}
    assert by_model["large"]["running"] == 3 and by_model["large"]["waiting"] == 2
    assert all(e["healthy"] for e in st["engines"])
    (wf,) = st["workflows"]
    assert wf["name"] == "wf" and wf["policy"] == "largest"
    mix = {s["name"]: s["mix"] for s in wf["stages"]}
    assert mix == {"gen": {"large": 1}, "judge": {"small": 1}}
    assert wf["calls"] == 2 and wf["errors"] == 0
    assert wf["latency_p50_s"] is not None and wf["latency_p50_s"] >= 0
    assert st["scheduler"]["queued"] == 0


async def test_status_page_is_html_that_polls_the_json(
    env: tuple[httpx.AsyncClient, dict[str, FakeEngine], Gateway],
) -> None:
    client, _, _ = env
    resp = await client.get("/status")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert 'fetch("status.json"' in resp.text and "engine-row" in resp.text


async def test_status_shows_an_unreachable_engine_as_down(
    env: tuple[httpx.AsyncClient, dict[str, FakeEngine], Gateway],
) -> None:
    client, engines, gw = env
    engines["small"].fail_metrics = True
    await gw.poller.poll_once()
    st = (await client.get("/status.json")).json()
    small = next(e for e in st["engines"] if e["model"] == "small")
    assert small["scrape_errors"] == 1 and small["last_error"]


@pytest.mark.parametrize(
    ("buckets", "q", "want"),
    [
        ([], 0.5, None),
        ([(1.0, 0.0), (math.inf, 0.0)], 0.5, None),
        ([(1.0, 10.0), (2.0, 10.0), (math.inf, 10.0)], 0.5, 0.5),  # linear inside (0, 1]
        ([(1.0, 0.0), (2.0, 10.0), (math.inf, 10.0)], 0.5, 1.5),
        ([(2.0, 10.0), (1.0, 0.0), (math.inf, 10.0)], 1.0, 2.0),  # order does not matter
        ([(1.0, 0.0), (math.inf, 4.0)], 0.5, 1.0),  # only +Inf: its lower edge
    ],
)
def test_histogram_quantile(
    buckets: list[tuple[float, float]], q: float, want: float | None
) -> None:
    got = histogram_quantile(buckets, q)
    assert got == (None if want is None else pytest.approx(want))
