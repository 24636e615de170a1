"""The gateway under real uvicorn, in front of real vLLM CPU engines, driven by the openai SDK."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI

from aragog.localfleet import LocalFleet
from tests.e2e.conftest import SMALL_MAX_SEQS, scrape

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


def test_snapshot_shows_real_queueing(client: OpenAI, gateway_url: str) -> None:
    """Ten long calls on an engine that runs two at a time: the poller must see a queue.

    Long (~10 s in all) because a saturated engine on two cores starves this sampler for
    seconds at a time; short calls could all start and finish between two samples."""
    def long_call(_: int) -> None:
        client.completions.create(model="tiny-s", prompt="x", max_tokens=900,
                                  extra_body={"ignore_eos": True})

    peak_waiting = peak_inflight = 0.0
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(long_call, i) for i in range(10)]
        while not all(f.done() for f in futures):
            peak_waiting = max(peak_waiting, _engine_gauge(gateway_url, "aragog_engine_waiting",
                                                           "tiny-s"))
            peak_inflight = max(peak_inflight,
                                _engine_gauge(gateway_url, "aragog_engine_inflight", "tiny-s"))
            time.sleep(0.05)
        for f in futures:
            f.result()
    assert peak_waiting >= 1, "the scraped snapshot never showed a waiting request"
    # More in flight than the engine runs at once (how many more depends on how fast eight
    # threads get going on this shared 2-core machine).
    assert peak_inflight > SMALL_MAX_SEQS, (peak_inflight, peak_waiting)
    assert _engine_gauge(gateway_url, "aragog_engine_inflight", "tiny-s") == 0


def test_client_disconnect_cancels_upstream(gateway_url: str, fleet: LocalFleet) -> None:
    body = {"model": "tiny-m", "prompt": "x", "max_tokens": 900, "stream": True,
            "ignore_eos": True}
    with httpx.stream("POST", gateway_url + "/v1/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        for i, _ in enumerate(resp.iter_raw()):
            if i >= 3:
                break  # leave mid-stream
    engine = fleet.url("tiny-m")
    deadline = time.monotonic() + 10
    running = 1.0
    while time.monotonic() < deadline and running:
        text = httpx.get(engine + "/metrics", timeout=5).text
        running = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("vllm:num_requests_running"))
        time.sleep(0.1)
    assert running == 0, "the engine kept generating for a client that left"
    deadline = time.monotonic() + 5
    while _engine_gauge(gateway_url, "aragog_engine_inflight", "tiny-m") and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert _engine_gauge(gateway_url, "aragog_engine_inflight", "tiny-m") == 0


def test_embeddings_routed_to_named_model(client: OpenAI, fleet: LocalFleet) -> None:
    if "tiny-embed" not in fleet.urls:
        pytest.skip("this vLLM build serves no local embedding model")
    resp = client.embeddings.create(model="tiny-embed", input=["a queue", "a stack"])
    assert len(resp.data) == 2 and len(resp.data[0].embedding) > 8


def test_metrics_and_ready(gateway_url: str) -> None:
    assert httpx.get(gateway_url + "/ready").status_code == 200
    m = scrape(gateway_url)
    assert any(k.startswith("aragog_engine_healthy{") and v == 1.0 for k, v in m.items())
    assert m["aragog_fleet_snapshot_age_seconds"] < 2.0
    assert any(k.startswith("aragog_tokens_total{") for k in m)
