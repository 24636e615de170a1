"""The rich live view drawn from a StatusView: what a person must be able to read off it."""

from __future__ import annotations

from rich.console import Console

from aragog.api.status import StatusView
from aragog.dashboard import mix_bar, render

VIEW: StatusView = {
    "time": 0.0,
    "ready": True,
    "problems": [],
    "snapshot_age_s": 0.05,
    "engines": [
        {"id": "tiny-s@a:1", "model": "tiny-s", "url": "http://a:1", "healthy": True,
         "running": 3, "waiting": 2, "kv_usage": 0.25, "inflight": 4, "scrape_errors": 0,
         "last_error": None},
        {"id": "tiny-l@a:2", "model": "tiny-l", "url": "http://a:2", "healthy": False,
         "running": 0, "waiting": 0, "kv_usage": 0.0, "inflight": 0, "scrape_errors": 5,
         "last_error": "timeout"},
    ],
    "scheduler": {"queued": 7, "rounds": 12, "last_round": None, "skipped": 1, "rejected": 0},
    "workflows": [
        {"name": "refine", "policy": "aragog", "calls": 4, "errors": 0,
         "latency_p50_s": 0.12, "latency_p95_s": 0.5, "wait_mean_s": 0.01, "router_fallbacks": 0,
         "stages": [{"name": "generate", "models": ["tiny-s", "tiny-l"],
                     "mix": {"tiny-s": 3, "tiny-l": 1}}]},
        {"name": "idle", "policy": "largest", "calls": 0, "errors": 0, "latency_p50_s": None,
         "latency_p95_s": None, "wait_mean_s": None, "router_fallbacks": 0,
         "stages": [{"name": "never-called", "models": ["tiny-s"], "mix": {}}]},
    ],
}


def _text(view: StatusView) -> str:
    console = Console(record=True, width=160)
    console.print(render(view, "T", "footer line"))
    return console.export_text()


def test_render_shows_engines_mix_queue_and_latency() -> None:
    text = _text(VIEW)
    for needle in ("tiny-s@a:1", "tiny-l@a:2", "down", "7 queued", "120 ms / 500 ms",
                   "tiny-l 25% tiny-s 75%", "footer line", "ready"):
        assert needle in text, needle
    assert "never-called" not in text  # idle workflows take one line, not one per stage


def test_mix_bar() -> None:
    assert mix_bar({}, {}).plain == "-"
    bar = mix_bar({"a": 1, "b": 3}, {"a": "red", "b": "blue"}).plain
    assert bar.endswith("a 25% b 75%") and bar.count("█") == 24
