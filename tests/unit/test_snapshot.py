"""The snapshot step and the poller, driven by an injected clock (no sleeping)."""

from __future__ import annotations

import httpx

from aragog.config import MetricNames, PollerConfig
from aragog.fleet.load import InFlight, engine_load, least_loaded
from aragog.fleet.metrics import EngineMetrics
from aragog.fleet.poller import FleetPoller
from aragog.fleet.snapshot import EngineRef, ScrapeFailure, advance, initial_snapshot

A = EngineRef("a", "m", "http://a", "m")
B = EngineRef("b", "m", "http://b", "m")


def metrics(running: float = 0, waiting: float = 0, kv: float = 0.0) -> EngineMetrics:
    return EngineMetrics(running, waiting, kv)


def test_unknown_until_first_scrape_then_healthy() -> None:
    s0 = initial_snapshot([A], now=0.0)
    assert not s0.engines["a"].healthy and s0.taken_at == 0.0
    s1 = advance(s0, {"a": metrics(2, 1)}, now=0.1, stale_after_s=2.0)
    assert s1.engines["a"].healthy and s1.engines["a"].scraped_load == 3
    assert s0.engines["a"].metrics is None  # the old snapshot is untouched


def test_failures_tolerated_until_stale() -> None:
    s = advance(initial_snapshot([A], 0.0), {"a": metrics(1)}, 1.0, 2.0)
    s = advance(s, {"a": ScrapeFailure("timeout")}, 2.5, 2.0)
    st = s.engines["a"]
    assert st.healthy and st.metrics is not None and st.consecutive_errors == 1
    s = advance(s, {"a": ScrapeFailure("timeout")}, 3.01, 2.0)
    st = s.engines["a"]
    assert not st.healthy and st.metrics is None and st.consecutive_errors == 2
    assert st.last_error == "timeout"
    s = advance(s, {"a": metrics(0)}, 3.2, 2.0)
    assert s.engines["a"].healthy and s.engines["a"].consecutive_errors == 0


def test_load_blends_scrape_and_inflight() -> None:
    s = advance(initial_snapshot([A, B], 0.0), {"a": metrics(3, 1), "b": metrics(1)}, 0.1, 2.0)
    inflight = InFlight()
    assert engine_load(s.engines["a"], 0) == 4
    for _ in range(6):  # a burst the scrape has not seen yet
        inflight.acquire("b")
    assert engine_load(s.engines["b"], inflight.get("b")) == 6
    picked = least_loaded(s.of_model("m"), inflight)
    assert picked is not None and picked.ref.engine_id == "a"
    for _ in range(6):
        inflight.release("b")
    assert inflight.view() == {}


async def test_poller_scrapes_concurrently_and_marks_stale() -> None:
    now = [0.0]
    page = (
        "vllm:num_requests_running 2\nvllm:num_requests_waiting 5\n"
        "vllm:kv_cache_usage_perc 0.5\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "b":
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, text=page)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    poller = FleetPoller([A, B], client, PollerConfig(), MetricNames(), clock=lambda: now[0])
    seen: list[object] = []
    poller.on_poll_start(lambda: seen.append("start"))
    poller.subscribe(lambda snap, results: seen.append(sorted(results)))
    snap = await poller.poll_once()
    assert snap.engines["a"].healthy and snap.engines["a"].metrics == metrics(2, 5, 0.5)
    assert not snap.engines["b"].healthy and snap.engines["b"].last_error == "ConnectError"
    assert seen == ["start", ["a", "b"]]
    now[0] = 5.0
    page = "garbage"
    snap = await poller.poll_once()
    assert not snap.engines["a"].healthy
    assert (snap.engines["a"].last_error or "").startswith("parse:")
    assert poller.snapshot is snap


def test_inflight_peaks_since_the_last_take() -> None:
    inflight = InFlight()
    for _ in range(3):
        inflight.acquire("a")
    inflight.release("a")
    inflight.release("a")
    assert inflight.take_peaks() == {"a": 3}
    assert inflight.take_peaks() == {"a": 1}  # the window restarts at the current count
    inflight.release("a")
    assert inflight.take_peaks() == {"a": 1} and inflight.take_peaks() == {}
