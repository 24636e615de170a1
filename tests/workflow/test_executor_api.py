"""Workflow runs through the gateway app against scripted fake engines: traces, parallelism,
cascades and votes, forced configurations, and every error path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aragog.api.app import create_app
from aragog.api.gateway import Gateway
from aragog.config import parse_config
from aragog.workflow.spec import WorkflowSpec
from tests.fake_engine import HostRouter
from tests.workflow.fakes import ScriptedEngine, fleet_config
from tests.workflow.specs import ALL


def reply(model: str, prompt: str) -> str:
    if prompt.startswith("plan:"):
        return "1. a\n2. b\n3. c"
    if prompt.startswith("step: "):
        return "Y" if prompt.endswith("c") else "X"
    return f"The answer is {42 if model == 'large' or 'easy' in prompt else 41}."


class Env:
    def __init__(self, specs: dict[str, WorkflowSpec], **extra: Any) -> None:
        self.engines = {m: ScriptedEngine(m, reply, delay_s=0.05) for m in ("small", "large")}
        upstream = httpx.AsyncClient(transport=httpx.ASGITransport(
            app=HostRouter({m: e.app() for m, e in self.engines.items()})))
        cfg = parse_config(fleet_config({m: f"http://{m}" for m in self.engines}, **extra))
        self.app = create_app(cfg, specs, client=upstream, poll=False)
        self.gw: Gateway = self.app.state.gateway
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gw")

    async def run(self, name: str, body: Any, headers: dict[str, str] | None = None
                  ) -> httpx.Response:
        return await self.client.post(f"/v1/workflows/{name}/runs", json=body, headers=headers)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env(ALL)
    await e.gw.poller.poll_once()
    yield e
    await e.client.aclose()


@pytest.fixture
async def profiling() -> AsyncIterator[Env]:
    e = Env(ALL, profiling=True, workflows={"cascade": {"policy": "aragog"}})
    await e.gw.poller.poll_once()
    yield e
    await e.client.aclose()


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    return str(err["message"])


async def test_chain_runs_each_stage_through_the_gateway_with_a_trace(env: Env) -> None:
    resp = await env.run("chain", {"input": "what is six times seven?"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["answer"] == "42" and out["text"] == "The answer is 42."
    assert [t["stage"] for t in out["stages"]] == ["draft", "final"]
    for t in out["stages"]:
        assert t["model"] == "large" and t["engine"] == "large@large"  # policy: largest
        assert t["latency_s"] >= t["queue_wait_s"] >= 0
        assert (t["prompt_tokens"], t["completion_tokens"]) == (11, 3)
    assert out["usage"] == {"prompt_tokens": 22, "completion_tokens": 6}
    final = env.engines["large"].seen[-1]
    assert final["messages"][0] == {"role": "system", "content": "be brief"}
    assert "Draft: The answer is 42." in final["messages"][1]["content"]
    assert "metadata" not in final and final["max_tokens"] == 256
    # the same accounting as a user's tagged call
    text = env.gw.metrics.exposition().decode()
    assert 'aragog_requests_total{model="large",stage="final",status="200",workflow="chain"}' \
        in text


async def test_parallel_stages_overlap_and_votes_combine(env: Env) -> None:
    resp = await env.run("fanout", {"input": "plan: split it"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert env.engines["large"].peak == 3  # the three solvers were in flight together
    solvers = [t for t in out["stages"] if t["stage"].startswith("solve")]
    plan = out["stages"][0]
    assert all(t["started_s"] >= plan["started_s"] + plan["latency_s"] for t in solvers)
    assert [t["answer"] for t in solvers] == ["X", "X", "Y"]
    assert out["answer"] == "X"  # plurality of the solvers, not the voter's own text


async def test_cascade_judge_skipped_when_solvers_agree(env: Env) -> None:
    out = (await env.run("cascade", {"input": "sum?"})).json()
    judge = out["stages"][2]
    assert judge["skipped"] and judge["model"] is None and judge["answer"] == "42"
    assert out["configuration"] == {"a": "large", "b": "large", "judge": None}
    assert out["answer"] == "42"


async def test_forced_configuration_with_profiling(profiling: Env) -> None:
    force = {"x-aragog-configuration": "a=small,b=large,judge=small"}
    out = (await profiling.run("cascade", {"input": "sum?"}, force)).json()
    assert out["configuration"] == {"a": "small", "b": "large", "judge": "small"}
    assert out["stages"][2]["skipped"] is False and out["answer"] == "41"
    # the header also forces a plain tagged call (policy largest would pick large)
    resp = await profiling.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}]},
        headers={"x-aragog-workflow": "chain", "x-aragog-stage": "draft",
                 "x-aragog-configuration": "draft=small,final=small"},
    )
    assert resp.status_code == 200 and resp.headers["x-aragog-model"] == "small"
    assert float(resp.headers["x-aragog-queue-wait"]) >= 0


async def test_bad_forced_configurations(profiling: Env, env: Env) -> None:
    msg = error(await profiling.run("cascade", {"input": "q"},
                                    {"x-aragog-configuration": "a=small,b=huge"}),
                400, "invalid_configuration")
    assert "'huge' is not a candidate of stage 'b'" in msg and "no model for stage 'judge'" in msg
    error(await env.run("cascade", {"input": "q"},
                        {"x-aragog-configuration": "a=small,b=small,judge=small"}),
          403, "profiling_disabled")
    resp = await env.client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
        headers={"x-aragog-workflow": "chain", "x-aragog-stage": "draft",
                 "x-aragog-configuration": "draft=small,final=small"})
    error(resp, 403, "profiling_disabled")


@pytest.mark.parametrize(("name", "body", "status", "code", "needle"), [
    ("nope", {"input": "q"}, 404, "workflow_not_found", "unknown workflow 'nope'"),
    ("chain", {}, 400, "invalid_request", "missing required field 'input'"),
    ("chain", {"input": ""}, 400, "invalid_input", "non-empty string or object"),
    ("chain", {"input": "q", "extra": 1}, 400, "invalid_request", "unknown fields ['extra']"),
    ("sql", {"input": "q"}, 400, "invalid_input", "reads input.schema; give an object"),
    ("sql", {"input": {"question": "q"}}, 400, "invalid_input", "input.schema: missing"),
    ("twosinks", {"input": "q"}, 400, "workflow_not_runnable", "several stages end the DAG"),
])
async def test_bad_runs_are_clear(
    env: Env, name: str, body: Any, status: int, code: str, needle: str
) -> None:
    assert needle in error(await env.run(name, body), status, code)


async def test_object_input_and_invalid_json(env: Env) -> None:
    out = await env.run("sql", {"input": {"question": "how many?", "schema": "t(a)"}})
    assert out.status_code == 200, out.text
    assert env.engines["large"].seen[-1]["messages"][0]["content"] == "t(a) how many?"
    resp = await env.client.post("/v1/workflows/chain/runs", content=b"{nope")
    error(resp, 400, "invalid_json")


async def test_stage_failure_names_the_stage(env: Env) -> None:
    env.engines["large"].status = 500
    msg = error(await env.run("chain", {"input": "q"}), 502, "stage_failed")
    assert msg.startswith("stage 'draft':")
