"""The gateway app against in-process fake engines: content paths and every error path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aragog.api.app import create_app
from aragog.api.gateway import Gateway
from aragog.config import parse_config
from aragog.proxy import HttpxUpstream
from aragog.workflow.spec import WorkflowSpec
from tests.fake_engine import FakeEngine, HostRouter

CONFIG = {
    "fleet": {
        "models": [
            {"name": "small", "cost": 1, "engines": [
                {"url": "http://small-a", "served_model_name": "s"},
                {"url": "http://small-b", "served_model_name": "s"},
            ]},
            {"name": "large", "cost": 8, "engines": [{"url": "http://large"}]},
        ]
    },
    "limits": {"max_body_bytes": 4096},
}
WORKFLOW = WorkflowSpec.model_validate({
    "name": "wf",
    "stages": [{"name": "gen", "models": ["small", "large"]},
               {"name": "judge", "models": ["small"]}],
    "edges": [["gen", "judge"]],
})


class Env:
    def __init__(self) -> None:
        self.engines = {h: FakeEngine(h) for h in ("small-a", "small-b", "large")}
        upstream = httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=HostRouter({h: e.app() for h, e in self.engines.items()})
            )
        )
        self.now = 1000.0
        self.app: FastAPI = create_app(
            parse_config(CONFIG), {"wf": WORKFLOW}, client=upstream, poll=False,
            clock=lambda: self.now,
        )
        self.gw: Gateway = self.app.state.gateway
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gw"
        )

    async def chat(self, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        payload = {"messages": [{"role": "user", "content": "hi"}], **body}
        return await self.client.post("/v1/chat/completions", json=payload, headers=headers)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    await e.gw.poller.poll_once()
    yield e
    await e.client.aclose()


def assert_openai_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["type"]


async def test_plain_call_goes_to_least_loaded_replica(env: Env) -> None:
    env.engines["small-a"].running = 5
    await env.gw.poller.poll_once()
    resp = await env.chat(model="small", temperature=0.3, top_k=5)
    assert resp.status_code == 200
    assert resp.headers["x-aragog-engine"] == "small@small-b"
    assert resp.headers["x-aragog-model"] == "small"
    sent = env.engines["small-b"].seen[-1]
    assert sent["model"] == "s"  # rewritten to the engine's served name
    assert sent["top_k"] == 5  # unknown fields pass through


async def test_workflow_call_largest_policy_and_state(env: Env) -> None:
    headers = {"X-Aragog-Workflow": "wf", "X-Aragog-Request-Id": "r1", "X-Aragog-Stage": "gen"}
    resp = await env.chat(headers, model="anything")
    assert resp.status_code == 200
    assert resp.headers["x-aragog-model"] == "large"
    assert resp.headers["x-aragog-request-id"] == "r1"
    state = await env.gw.store.get("wf", "r1")
    assert state is not None
    assert dict(state.chosen) == {"gen": "large"} and dict(state.done) == {"gen": "large"}


async def test_tags_from_metadata_are_stripped(env: Env) -> None:
    meta = {"aragog_workflow": "wf", "aragog_stage": "judge", "aragog_request_id": "r2",
            "user_key": "kept"}
    resp = await env.chat(metadata=meta)
    assert resp.status_code == 200
    assert resp.headers["x-aragog-model"] == "small"
    sent = next(e.seen[-1] for e in env.engines.values() if e.seen)
    assert sent["metadata"] == {"user_key": "kept"}


async def test_streaming_hides_usage_it_asked_for(env: Env) -> None:
    async with env.client.stream(
        "POST", "/v1/chat/completions",
        json={"model": "large", "messages": [{"role": "user", "content": "x"}], "stream": True},
    ) as resp:
        assert resp.status_code == 200
        text = (await resp.aread()).decode()
    assert '"usage"' not in text and text.endswith("data: [DONE]\n\n")
    assert env.engines["large"].seen[-1]["stream_options"] == {"include_usage": True}
    metrics = (await env.client.get("/metrics")).text
    assert 'aragog_tokens_total{kind="completion",model="large"} 3.0' in metrics


async def test_streaming_keeps_usage_client_asked_for(env: Env) -> None:
    resp = await env.client.post("/v1/chat/completions", json={
        "model": "large", "messages": [{"role": "user", "content": "x"}], "stream": True,
        "stream_options": {"include_usage": True}})
    events = [json.loads(line[6:]) for line in resp.text.split("\n\n")
              if line.startswith("data: {")]
    assert events[-1]["usage"]["completion_tokens"] == 3


async def test_embeddings_and_models(env: Env) -> None:
    resp = await env.client.post("/v1/embeddings", json={"model": "large", "input": "x"})
    assert resp.status_code == 200 and resp.json()["data"][0]["embedding"] == [0.1, 0.2]
    models = (await env.client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["small", "large"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
         "invalid_json"),
        ({"content": b"[1,2]"}, 400, "invalid_json"),
        ({"json": {"model": "small"}}, 400, "invalid_request"),
        ({"json": {"model": "small", "messages": "hi"}}, 400, "invalid_request"),
        ({"json": {"messages": [{"role": "user", "content": "x"}]}}, 400, "invalid_request"),
        ({"json": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}}, 404,
         "model_not_found"),
        ({"json": {"model": "small", "messages": [1], "stream": "yes"}}, 400, "invalid_request"),
        ({"json": {"messages": [1], "metadata": {"aragog_workflow": "nope"}}}, 404,
         "workflow_not_found"),
        ({"json": {"messages": [1], "metadata": {"aragog_workflow": "wf"}}}, 400,
         "stage_required"),
        ({"json": {"messages": [1], "metadata": {"aragog_workflow": "wf",
                                                 "aragog_stage": "x"}}}, 404, "stage_not_found"),
        ({"json": {"messages": [1], "metadata": {"aragog_stage": "gen"}}}, 400,
         "invalid_request"),
        ({"json": {"messages": [1], "metadata": {"aragog_workflow": 3}}}, 400,
         "invalid_request"),
        ({"json": {"model": "small", "messages": ["x" * 5000]}}, 413, "request_too_large"),
    ],
)
async def test_bad_input_gets_openai_error(
    env: Env, kwargs: dict[str, Any], status: int, code: str
) -> None:
    resp = await env.client.post("/v1/chat/completions", **kwargs)
    assert_openai_error(resp, status, code)
    assert (await env.chat(model="small")).status_code == 200  # still serving


async def test_header_and_metadata_conflict(env: Env) -> None:
    resp = await env.chat({"X-Aragog-Workflow": "wf"}, metadata={"aragog_workflow": "other"})
    assert_openai_error(resp, 400, "invalid_request")


async def test_unknown_route_and_method(env: Env) -> None:
    assert_openai_error(await env.client.get("/v1/nope"), 404, "not_found")
    assert_openai_error(await env.client.get("/v1/chat/completions"), 405, "method_not_allowed")


async def test_engine_error_passes_through_and_frees_slot(env: Env) -> None:
    env.engines["large"].status = 400
    resp = await env.chat(model="large")
    assert resp.status_code == 400 and resp.json()["error"]["message"] == "engine says no"
    assert env.gw.inflight.get("large@large") == 0


async def test_unreachable_engine_is_502_and_no_engine_is_503(env: Env) -> None:
    gw = env.gw
    working = gw.upstream
    refusing = httpx.AsyncClient(transport=httpx.MockTransport(_refuse))
    gw.upstream = HttpxUpstream(refusing, gw.cfg.upstream)
    assert_openai_error(await env.chat(model="large"), 502, "upstream_unavailable")
    assert gw.inflight.get("large@large") == 0
    gw.upstream = working
    env.engines["large"].fail_metrics = True
    env.now += 10  # past the staleness cutoff
    await gw.poller.poll_once()
    assert_openai_error(await env.chat(model="large"), 503, "no_healthy_engine")


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


async def test_ready_reflects_engine_health(env: Env) -> None:
    assert (await env.client.get("/ready")).status_code == 200
    for e in env.engines.values():
        e.fail_metrics = True
    env.now += 10
    await env.gw.poller.poll_once()
    resp = await env.client.get("/ready")
    assert resp.status_code == 503 and resp.json()["problems"]
    assert (await env.client.get("/health")).status_code == 200


async def test_metrics_exported(env: Env) -> None:
    await env.chat(model="small")
    text = (await env.client.get("/metrics")).text
    for name in ("aragog_requests_total", "aragog_request_latency_seconds_bucket",
                 "aragog_engine_running", "aragog_engine_kv_usage", "aragog_engine_healthy",
                 "aragog_gateway_overhead_seconds_bucket", "aragog_fleet_snapshot_age_seconds",
                 "aragog_engine_inflight"):
        assert name in text, name
    assert "vllm:" not in text
