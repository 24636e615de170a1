"""Engine faults against the in-process gateway: retries before the first byte, breaker,
mid-stream errors, aborts, and no leaked capacity afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from aragog.fleet.health import Phase
from tests.reliability.faults import Env

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    await e.gw.poller.poll_once()
    yield e
    await e.client.aclose()


def events(text: str) -> list[dict[str, object]]:
    return [json.loads(x[6:]) for x in text.split("\n\n") if x.startswith("data: {")]


@pytest.mark.parametrize("fault", ["refuse", "hang", "503", "break"])
@pytest.mark.parametrize("stream", [False, True])
async def test_failure_before_first_byte_retries_on_other_replica(
    env: Env, fault: str, stream: bool
) -> None:
    env.transport.faults["small-a"] = fault  # type: ignore[assignment]
    env.engines["small-b"].running = 3  # a is preferred, so the first try lands on it
    await env.gw.poller.poll_once()
    resp = await env.chat(model="small", stream=stream)
    if fault == "break" and stream:
        # The first event reached the client before the break: no retry, an error event.
        assert resp.status_code == 200 and resp.headers["x-aragog-engine"] == "small@small-a"
        assert events(resp.text)[-1]["error"]["code"] == "upstream_unavailable"  # type: ignore[index]
    else:
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-aragog-engine"] == "small@small-b"
        retries = (await env.client.get("/metrics")).text
        assert "aragog_upstream_retries_total" in retries
    assert env.inflight_total() == 0


async def test_refused_engine_opens_breaker_at_once_and_probe_closes_it(env: Env) -> None:
    env.transport.faults["small-a"] = "refuse"
    env.engines["small-b"].running = 3
    await env.gw.poller.poll_once()
    assert (await env.chat(model="small")).status_code == 200
    assert env.gw.breakers.phase("small@small-a") is Phase.OPEN
    assert not env.gw.fleet().engines["small@small-a"].healthy
    # While open, nothing is sent there even though it looks least loaded.
    before = env.transport.calls.get("small-a", 0)
    for _ in range(3):
        assert (await env.chat(model="small")).headers["x-aragog-engine"] == "small@small-b"
    assert env.transport.calls.get("small-a", 0) == before
    metrics = (await env.client.get("/metrics")).text
    assert 'aragog_engine_breaker_state{engine="small@small-a"} 1.0' in metrics
    assert 'aragog_engine_healthy{engine="small@small-a",model="small"} 0.0' in metrics
    # The engine comes back: scrapes inside the cooldown do not close it, after it they do.
    del env.transport.faults["small-a"]
    await env.gw.poller.poll_once()
    assert env.gw.breakers.phase("small@small-a") is Phase.OPEN
    env.now += 1.5
    await env.gw.poller.poll_once()
    assert env.gw.breakers.phase("small@small-a") is Phase.CLOSED
    assert (await env.chat(model="small")).headers["x-aragog-engine"] == "small@small-a"


async def test_hung_engine_aborted_when_its_breaker_opens(env: Env) -> None:
    """A whole (non-streamed) answer has no first-byte timer; the breaker opening on failed
    scrapes cancels the try, which is then retried on the other replica."""
    env.transport.faults["small-a"] = "hang"
    env.engines["small-b"].running = 3
    await env.gw.poller.poll_once()
    call = asyncio.create_task(env.chat(model="small"))
    await asyncio.sleep(0.05)
    assert env.transport.calls["small-a"] == 1 and not call.done()
    env.engines["small-a"].fail_metrics = True  # a hung engine cannot answer scrapes either
    await env.gw.poller.poll_once()
    await env.gw.poller.poll_once()  # threshold 2
    resp = await asyncio.wait_for(call, 2)
    assert resp.status_code == 200 and resp.headers["x-aragog-engine"] == "small@small-b"
    assert env.inflight_total() == 0


async def test_only_replica_failing_gives_its_error_after_the_budget(env: Env) -> None:
    env.transport.faults["large"] = "503"
    resp = await env.chat(model="large")
    assert resp.status_code == 503 and resp.json()["error"]["message"] == "overloaded"
    assert env.transport.calls["large"] == 2  # first try + one retry, then the breaker opened
    env.transport.faults["large"] = "hang"
    env.now += 5
    await env.gw.poller.poll_once()
    resp = await env.chat(model="large", stream=True)
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
    assert env.inflight_total() == 0


async def test_stream_silent_after_first_event_ends_with_error_event(env: Env) -> None:
    env.transport.faults["large"] = "hang_body"
    resp = await asyncio.wait_for(env.chat(model="large", stream=True), 3)
    # Headers came, the body never did: that is a first-byte timeout, retried, then 504.
    assert resp.status_code == 504
    assert env.inflight_total() == 0


async def test_client_disconnect_mid_stream_frees_the_slot(env: Env) -> None:
    env.transport.faults["large"] = "hang"
    task = asyncio.create_task(env.chat(model="large", stream=True))
    await asyncio.sleep(0.05)
    assert env.inflight_total() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert env.inflight_total() == 0


@pytest.mark.parametrize(
    ("body", "status", "sent"),
    [
        ({}, 200, 64),
        ({"max_tokens": 10}, 200, 10),
        ({"max_tokens": 65}, 400, None),
        ({"max_completion_tokens": 1000}, 400, None),
        ({"max_tokens": "5"}, 400, None),
        ({"max_tokens": True}, 400, None),
    ],
)
async def test_max_tokens_ceiling(body: dict[str, object], status: int, sent: int | None) -> None:
    from tests.reliability.faults import CONFIG

    env = Env({**CONFIG, "limits": {"max_tokens": 64}})
    await env.gw.poller.poll_once()
    resp = await env.chat(model="large", **body)
    assert resp.status_code == status, resp.text
    if sent is not None:
        assert env.engines["large"].seen[-1]["max_tokens"] == sent
    else:
        assert resp.json()["error"]["param"] in ("max_tokens", "max_completion_tokens")
