"""Two gateway processes on one real redis-server, in front of the session's real vLLM
fleet: a workflow request whose calls alternate between replicas keeps one model per
stage, and killing a replica mid-request loses nothing."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from aragog.localfleet import LocalFleet
from tests.e2e.conftest import Gateway, gateway_config
from tests.reliability.redis_server import redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MSG = [{"role": "user", "content": "Vote on the colour of queues."}]
STAGES = ["voter1", "voter2", "voter3", "voter4", "aggregate"]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run scripts/setup.sh")
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def replicas(
    fleet: LocalFleet, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Gateway]]:
    cfg = gateway_config(fleet, store={"backend": "redis", "redis_url": redis_url,
                                       "key_prefix": f"e2e{time.time_ns()}"})
    cfg["workflows"] = {"voting": {"policy": "aragog"}, "refine": {"policy": "aragog"}}
    work = tmp_path_factory.mktemp("replicas")
    gws = [Gateway(cfg, work), Gateway(cfg, work)]
    try:
        for g in gws:
            g.wait_ready()
        yield gws
    finally:
        for g in gws:
            g.stop()  # also closes the log of a replica the test killed


def _call(url: str, rid: str, stage: str, stream: bool = False, tokens: int = 6) -> httpx.Response:
    headers = {"X-Aragog-Workflow": "voting", "X-Aragog-Request-Id": rid,
               "X-Aragog-Stage": stage}
    body = {"model": "aragog", "messages": MSG, "max_tokens": tokens, "stream": stream}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


def test_calls_alternate_between_replicas(replicas: list[Gateway]) -> None:
    a, b = replicas
    for n in range(3):
        rid = f"alt-{n}-{time.time_ns()}"
        models: dict[str, set[str]] = {}
        for k, stage in enumerate(STAGES + STAGES[:2]):  # voters 1-2 asked twice
            gw = (a, b)[k % 2]
            resp = _call(gw.url, rid, stage)
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-aragog-request-id"] == rid
            models.setdefault(stage, set()).add(resp.headers["x-aragog-model"])
        assert all(len(m) == 1 for m in models.values()), models
        print(f"\n{rid}: " + ", ".join(f"{s}={m.pop()}" for s, m in models.items()))


def test_killing_a_replica_mid_request_loses_nothing(replicas: list[Gateway]) -> None:
    a, b = replicas
    rid = f"kill-{time.time_ns()}"
    first = {s: _call(a.url, rid, s).headers["x-aragog-model"] for s in STAGES[:2]}
    # A long stream of voter3 is in flight on replica a when it is SIGKILLed.
    failure: list[BaseException] = []

    def long_call() -> None:
        try:
            _call(a.url, rid, "voter3", stream=True, tokens=400)
        except BaseException as err:
            failure.append(err)

    t = threading.Thread(target=long_call)
    t.start()
    time.sleep(1.0)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    t.join(30)
    assert not t.is_alive()
    # The client retries voter3 on b; the request carries on there.
    again = {s: _call(b.url, rid, s) for s in STAGES}
    assert all(r.status_code == 200 for r in again.values()), {
        s: r.text for s, r in again.items()}
    for s, model in first.items():
        assert again[s].headers["x-aragog-model"] == model, (s, model)
    print(f"\nafter SIGKILL of replica a (client saw {failure[:1]}), replica b served: "
          + ", ".join(f"{s}={r.headers['x-aragog-model']}" for s, r in again.items()))
