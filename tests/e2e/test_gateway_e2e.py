"""The gateway under real uvicorn, in front of real vLLM CPU engines, driven by the openai SDK."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import openai
import pytest
from openai import OpenAI

from aragog.localfleet import LocalFleet
from tests.e2e.conftest import LONG_TOKENS, SMALL_MAX_SEQS, engine_counter, scrape

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "Say something about queues."}]


def test_models_lists_the_fleet(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"tiny-s", "tiny-m", "tiny-l"} <= set(ids)


def test_plain_chat_non_streaming(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tiny-m", messages=MSG, max_tokens=8, extra_body={"top_k": 3}
    )
    resp = raw.parse()
    assert raw.headers["x-aragog-model"] == "tiny-m"
    assert raw.headers["x-aragog-engine"].startswith("tiny-m@127.0.0.1:")
    assert resp.model == "tiny-m" and resp.usage is not None
    assert resp.usage.completion_tokens >= 1


def test_plain_completion_streaming_hides_injected_usage(client: OpenAI) -> None:
    chunks = list(client.completions.create(
        model="tiny-s", prompt="Once upon", max_tokens=12, stream=True
    ))
    assert chunks and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def test_streaming_usage_kept_when_asked(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="tiny-l", messages=MSG, max_tokens=6, stream=True,
        stream_options={"include_usage": True},
    ))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_workflow_calls_by_header_and_metadata(client: OpenAI, gateway_url: str) -> None:
    rid = f"req-{time.time_ns()}"
    tags = {"X-Aragog-Workflow": "refine", "X-Aragog-Request-Id": rid}
    raw = client.chat.completions.with_raw_response.create(
        model="aragog", messages=MSG, max_tokens=4,
        extra_headers={**tags, "X-Aragog-Stage": "generate"},
    )
    # `largest` puts every stage on its most expensive candidate.
    assert raw.headers["x-aragog-model"] == "tiny-l"
    assert raw.headers["x-aragog-request-id"] == rid
    stream = client.chat.completions.create(
        model="aragog", messages=MSG, max_tokens=4, stream=True,
        metadata={"aragog_workflow": "refine", "aragog_request_id": rid,
                  "aragog_stage": "critique"},
    )
    assert [c for c in stream if c.choices]
    done = scrape(gateway_url)
    key = 'aragog_requests_total{model="tiny-l",stage="critique",status="200",workflow="refine"}'
    assert done[key] >= 1


def test_engine_errors_pass_through(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny-s", prompt="x", max_tokens=100_000)
    assert "max" in str(info.value).lower()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{nope", 400, "invalid_json"),
        (json.dumps({"model": "tiny-s"}).encode(), 400, "invalid_request"),
        (json.dumps({"model": "gpt-5", "messages": MSG}).encode(), 404, "model_not_found"),
        (json.dumps({"messages": MSG, "metadata": {"aragog_workflow": "nope"}}).encode(), 404,
         "workflow_not_found"),
        (json.dumps({"messages": MSG, "metadata": {"aragog_workflow": "refine",
                                                   "aragog_stage": "x"}}).encode(), 404,
         "stage_not_found"),
        (b'{"model": "tiny-s", "messages": ["' + b"x" * (5 * 1024 * 1024) + b'"]}', 413,
         "request_too_large"),
    ],
)
def test_bad_input_is_a_clear_4xx(gateway_url: str, body: bytes, status: int, code: str) -> None:
    resp = httpx.post(gateway_url + "/v1/chat/completions", content=body,
                      headers={"content-type": "application/json"}, timeout=30)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    ok = httpx.post(gateway_url + "/v1/chat/completions", timeout=30,
                    json={"model": "tiny-s", "messages": MSG, "max_tokens": 2})
    assert ok.status_code == 200


def _engine_gauge(gateway_url: str, name: str, model: str) -> float:
    return sum(v for k, v in scrape(gateway_url).items()
               if k.startswith(name + "{") and f'model="{model}"' in k)


def _until(cond: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll ``cond`` until true or ``timeout_s``: this shared 2-core machine can stall a
    process for several seconds, so a check never depends on catching a short window."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


async def test_snapshot_shows_real_queueing(gateway_url: str, fleet: LocalFleet) -> None:
    """Ten long streams on an engine that runs two at a time: the gateway counts all of them
    in flight and its poller sees the engine's queue; when the clients leave, every slot is
    freed, in the gateway and in the engine.

    The streams are long (the state under test lasts tens of seconds) and the test leaves as
    soon as one scrape shows it, because this machine can stall a process for seconds."""
    body = {"model": "tiny-s", "prompt": "x", "max_tokens": LONG_TOKENS, "stream": True,
            "ignore_eos": True}

    def gauge(page: dict[str, float], name: str) -> float:
        return sum(v for k, v in page.items() if k.startswith(name + "{") and
                   'model="tiny-s"' in k)

    # Scrapes on fresh connections, and a failed one is a missed sample: a pooled connection
    # idle past the gateway's keep-alive while this machine stalled the test can be closed
    # under the next request.
    async with (
        httpx.AsyncClient(timeout=120) as c,
        httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_keepalive_connections=0)) as m,
    ):
        async def stream() -> None:
            async with c.stream("POST", gateway_url + "/v1/completions", json=body) as resp:
                async for _ in resp.aiter_raw():
                    pass

        async def scrape_async() -> dict[str, float]:
            try:
                text = (await m.get(gateway_url + "/metrics")).text
            except httpx.TransportError:
                return {}
            return {k: float(v) for k, _, v in (line.rpartition(" ") for line in
                    text.splitlines() if line and not line.startswith("#"))}

        tasks = [asyncio.create_task(stream()) for _ in range(10)]
        inflight = waiting = 0.0
        try:
            while not all(t.done() for t in tasks):
                page = await scrape_async()
                inflight = max(inflight, gauge(page, "aragog_engine_inflight"))
                waiting = max(waiting, gauge(page, "aragog_engine_waiting"))
                if inflight > SMALL_MAX_SEQS and waiting >= 1:
                    break
                await asyncio.sleep(0.1)
            ended = [t.exception() for t in tasks if t.done()]
        finally:
            for t in tasks:
                t.cancel()  # the clients leave mid-stream
            await asyncio.gather(*tasks, return_exceptions=True)
    # More in flight than the engine runs at once (the gateway's own count)...
    assert inflight > SMALL_MAX_SEQS, (inflight, ended)
    # ...and the poller saw the engine's queue.
    assert waiting >= 1, ("the scraped snapshot never showed a waiting request", ended)
    assert _until(lambda: _engine_gauge(gateway_url, "aragog_engine_inflight", "tiny-s") == 0)
    assert _until(lambda: engine_counter(
        fleet, "tiny-s", "vllm:num_requests_running", "vllm:num_requests_waiting") == 0)


def _leave_mid_stream(gateway_url: str, fleet: LocalFleet) -> float:
    """Tokens the engine generated for a long stream whose client left after 3 chunks."""
    before = engine_counter(fleet, "tiny-m", "vllm:generation_tokens_total")
    body = {"model": "tiny-m", "prompt": "x", "max_tokens": LONG_TOKENS, "stream": True,
            "ignore_eos": True}
    with httpx.stream("POST", gateway_url + "/v1/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        for i, _ in enumerate(resp.iter_raw()):
            if i >= 3:
                break  # leave mid-stream
    assert _until(lambda: engine_counter(fleet, "tiny-m", "vllm:num_requests_running") == 0)
    return engine_counter(fleet, "tiny-m", "vllm:generation_tokens_total") - before


def test_client_disconnect_cancels_upstream(gateway_url: str, fleet: LocalFleet) -> None:
    # A generation that ran to its end means the cancel came too late. That happens when
    # this shared machine stalls the gateway for the few seconds the generation takes, so
    # it gets three tries; a cancel that does not work fails all three.
    generated = [_leave_mid_stream(gateway_url, fleet)]
    while generated[-1] >= LONG_TOKENS and len(generated) < 3:
        generated.append(_leave_mid_stream(gateway_url, fleet))
    assert generated[-1] < LONG_TOKENS, f"the engine kept generating: {generated}"
    assert _until(lambda: _engine_gauge(gateway_url, "aragog_engine_inflight", "tiny-m") == 0)


def test_embeddings_routed_to_named_model(client: OpenAI, fleet: LocalFleet) -> None:
    if "tiny-embed" not in fleet.urls:
        pytest.skip("this vLLM build serves no local embedding model")
    resp = client.embeddings.create(model="tiny-embed", input=["a queue", "a stack"])
    assert len(resp.data) == 2 and len(resp.data[0].embedding) > 8


def test_metrics_and_ready(gateway_url: str) -> None:
    assert httpx.get(gateway_url + "/ready").status_code == 200
    m = scrape(gateway_url)
    assert any(k.startswith("aragog_engine_healthy{") and v == 1.0 for k, v in m.items())
    # The poller keeps the snapshot fresh (polled until so: a stalled process can read once).
    assert _until(lambda: scrape(gateway_url)["aragog_fleet_snapshot_age_seconds"] < 2.0)
    assert any(k.startswith("aragog_tokens_total{") for k in m)
