"""Engine faults against real vLLM CPU engines: SIGKILL mid-stream, SIGSTOP (hang),
restart. Its own two-replica fleet: these tests break engines, so they must not share the
session fleet. Run with ``flock /tmp/aragog-fleet.lock`` like every fleet test."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from aragog.localfleet import MODELS_DIR, VLLM_PYTHON, EngineSpec, LocalFleet, free_port
from tests.e2e.conftest import LONG_TOKENS, Gateway, scrape

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MSG = [{"role": "user", "content": "Tell me a long story about queues."}]


@pytest.fixture(scope="module")
def pair() -> Iterator[LocalFleet]:
    if not VLLM_PYTHON.exists() or not (MODELS_DIR / "tiny-s").is_dir():
        if os.environ.get("CI"):
            pytest.fail("the local vLLM fleet is not set up: run scripts/setup.sh")
        pytest.skip("no .venv-vllm/models: run scripts/setup.sh")
    specs = [EngineSpec("tiny-s", MODELS_DIR / "tiny-s", free_port(), max_num_seqs=4,
                        max_model_len=2048) for _ in range(2)]
    with LocalFleet(specs) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def gw(pair: LocalFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cfg = pair.gateway_config({
        "poller": {"interval_s": 0.1, "timeout_s": 0.3, "stale_after_s": 2.0},
        "upstream": {"first_byte_timeout_s": 5, "idle_timeout_s": 3, "read_timeout_s": 20,
                     "total_timeout_s": 60},
        "breaker": {"failure_threshold": 2, "cooldown_s": 1.0},
    })
    g = Gateway(cfg, tmp_path_factory.mktemp("faults"))
    try:
        g.wait_ready()
        yield g.url
    finally:
        g.stop()


def _engine_of(pair: LocalFleet, engine_id: str) -> int:
    return next(i for i, e in enumerate(pair._engines) if e.spec.engine_id == engine_id)


def _signal(pair: LocalFleet, i: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pair._engines[i].proc.pid, sig)  # the API server and its engine core


def _restart(pair: LocalFleet, i: int) -> float:
    old = pair._engines[i]
    _signal(pair, i, signal.SIGKILL)
    old.proc.wait()
    started = time.monotonic()
    pair._engines[i] = pair._spawn(old.spec)
    pair.wait_ready(timeout=180)
    return time.monotonic() - started


def _wait(cond: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def _breaker(url: str, eid: str) -> float:
    return scrape(url).get(f'aragog_engine_breaker_state{{engine="{eid}"}}', 0.0)


def _inflight(url: str) -> float:
    return sum(v for k, v in scrape(url).items() if k.startswith("aragog_engine_inflight{"))


def _no_leak(url: str) -> None:
    """Every slot comes back. Polled: the gateway releases a slot just after the client has
    its last byte, and this shared machine can stall the gateway for seconds."""
    _wait(lambda: _inflight(url) == 0, 30.0, "no call left in flight")


def _calls(url: str, n: int, stream: bool = False) -> list[int]:
    def one(_: int) -> int:
        body = {"model": "tiny-s", "messages": MSG, "max_tokens": 8, "stream": stream}
        return httpx.post(url + "/v1/chat/completions", json=body, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def _kill_mid_stream(pair: LocalFleet, gw: str) -> tuple[str, int, list[str], float]:
    """Stream a long generation, SIGKILL its engine after a few events, read to the end.
    Returns the victim, its index, what came after the kill and how long that took."""
    body = {"model": "tiny-s", "messages": MSG, "max_tokens": LONG_TOKENS, "stream": True,
            "temperature": 1.0, "ignore_eos": True}
    with httpx.stream("POST", gw + "/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        victim = resp.headers["x-aragog-engine"]
        lines = resp.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: {") for line in got)
        i = _engine_of(pair, victim)
        _signal(pair, i, signal.SIGKILL)
        killed = time.monotonic()
        rest = list(lines)  # must end, not hang
    return victim, i, rest, time.monotonic() - killed


def test_sigkill_mid_stream_then_restart(pair: LocalFleet, gw: str) -> None:
    t0 = time.monotonic()
    victim, i, rest, ended = _kill_mid_stream(pair, gw)
    try:
        if rest[-2:] == ["data: [DONE]", ""]:
            # This machine stalled the test long enough for the whole generation to finish
            # before the kill: nothing was tested yet. Once more, on a fresh engine.
            print("\nthe generation ended before the kill; again")
            _restart(pair, i)
            _wait(lambda: _breaker(gw, victim) == 0.0, 60.0, "breaker closed after restart")
            victim, i, rest, ended = _kill_mid_stream(pair, gw)
        assert any('"upstream_unavailable"' in line for line in rest), rest[-3:]
        print(f"\nSIGKILL {victim}: stream ended with an error event {ended:.2f}s after the kill")
        out = _wait(lambda: _breaker(gw, victim) == 1.0, 10.0, "breaker open")
        print(f"breaker open {out + ended:.2f}s after the kill")
        codes = _calls(gw, 12) + _calls(gw, 6, stream=True)
        assert codes == [200] * 18, codes  # the other replica serves everything
        _no_leak(gw)
        m = scrape(gw)
        assert m[f'aragog_engine_healthy{{engine="{victim}",model="tiny-s"}}'] == 0.0
    finally:
        took = _restart(pair, i)  # here, and also when this fails: the next test needs it
    back = _wait(lambda: _breaker(gw, victim) == 0.0, 60.0, "breaker closed after restart")
    print(f"restart took {took:.1f}s; breaker closed {back:.2f}s after the engine was up")
    before = scrape(gw).get(
        'aragog_requests_total{model="tiny-s",stage="",status="200",workflow=""}', 0)
    _calls(gw, 8)
    served = {k for k, v in scrape(gw).items()
              if k.startswith("aragog_upstream_failures_total") and v}
    print("failures recorded:", sorted(served))
    assert before >= 18
    # Traffic reaches the restarted engine again. Concurrent calls: one at a time, the
    # least-loaded choice breaks its tie between two idle replicas by engine id.
    def engine_of_call(_: int) -> str:
        r = httpx.post(gw + "/v1/chat/completions", timeout=60,
                       json={"model": "tiny-s", "messages": MSG, "max_tokens": 16})
        return r.headers["x-aragog-engine"]

    with ThreadPoolExecutor(4) as pool:
        hits = list(pool.map(engine_of_call, range(12)))
    assert victim in hits, hits
    print(f"total {time.monotonic() - t0:.1f}s")


def test_sigstop_hang_is_routed_around_and_recovers(pair: LocalFleet, gw: str) -> None:
    victim = pair._engines[0].spec.engine_id
    i = 0
    try:
        _signal(pair, i, signal.SIGSTOP)
        stopped = time.monotonic()
        # Calls in the first second may land on the hung engine: they must still finish.
        codes = _calls(gw, 8)
        out = _wait(lambda: _breaker(gw, victim) == 1.0, 15.0, "breaker open on a hung engine")
        print(f"\nSIGSTOP {victim}: breaker open {time.monotonic() - stopped - out:.2f}"
              f"-{time.monotonic() - stopped:.2f}s after the stop; first calls {codes}")
        assert all(c == 200 for c in codes), codes
        assert _calls(gw, 8, stream=True) == [200] * 8
        _no_leak(gw)
    finally:
        _signal(pair, i, signal.SIGCONT)
    back = _wait(lambda: _breaker(gw, victim) == 0.0, 60.0, "breaker closed after SIGCONT")
    print(f"SIGCONT: breaker closed after {back:.2f}s")
    assert _calls(gw, 8) == [200] * 8
    _no_leak(gw)
    log = Path(pair._engines[i].log_path)
    assert log.exists()
