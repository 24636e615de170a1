"""The pure helpers of benchmarks/live_policies.py (the live run itself is a benchmark, not a
test): percentiles, per-policy summaries, ratio table, round order, gateway load parsing."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "live_policies.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("live_policies", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


lp = _load()


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([3.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([float(i) for i in range(1, 21)], 95, 19.05),  # numpy's default gives the same
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert lp.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(lp.percentile([], 50))


def sample(sent: float, done: float | None, config: dict[str, str] | None = None) -> Any:
    return lp.Sample("p", 1, sent, done, None if done is not None else "HTTP 503", config or {})


def test_summary_pools_rounds_and_counts_failures() -> None:
    r1 = [sample(0.0, 1.0, {"a": "s", "b": "m"}), sample(1.0, 3.0, {"a": "s", "b": "s"})]
    r2 = [sample(0.0, 2.0, {"a": "l", "b": "l"}), sample(0.5, None)]
    s = lp.summarize("p", [r1, r2])
    assert (s.sent, s.completed, s.errors) == (4, 3, {"HTTP 503": 1})
    assert s.throughput == pytest.approx(3 / (3.0 + 2.0))  # spans: 0..3 and 0..2
    assert s.p50_s == pytest.approx(2.0)  # latencies 1, 2, 2
    assert s.mix == {"a": {"s": 2, "l": 1}, "b": {"m": 1, "s": 1, "l": 1}}
    assert lp.model_shares(s.mix, ["s", "m", "l"]) == pytest.approx(
        {"s": 3 / 6, "m": 1 / 6, "l": 2 / 6}
    )


def test_ratios_against_baselines() -> None:
    def summ(policy: str, tput: float, p50: float) -> Any:
        return lp.Summary(policy, 10, 10, {}, tput, p50, p50, 0.0, {})

    table = lp.ratios(
        {
            "aragog": summ("aragog", 3.0, 1.0),
            "per-input": summ("per-input", 2.0, 2.0),
            "dead": summ("dead", 0.0, float("nan")),
        },
        ["per-input", "per-workflow"],  # per-workflow was not run: no column
    )
    assert table["aragog"] == {"per-input": pytest.approx((1.5, 0.5))}
    assert table["per-input"]["per-input"] == (1.0, 1.0)
    assert table["dead"]["per-input"][0] == 0.0 and math.isnan(table["dead"]["per-input"][1])


def test_round_orders_alternate_and_requests_split() -> None:
    assert lp.round_orders(["a", "b", "c"], 3) == [
        ["a", "b", "c"],
        ["c", "b", "a"],
        ["a", "b", "c"],
    ]
    assert lp.split_requests(7, 2) == [4, 3]
    assert sum(lp.split_requests(160, 3)) == 160


def test_gateway_load_and_idle_slots() -> None:
    page = "\n".join(
        [
            "# HELP aragog_scheduler_queue_length Workflow calls held in the meta-queue",
            "aragog_scheduler_queue_length 3.0",
            'aragog_engine_inflight{engine="tiny-s@h:1",model="tiny-s"} 2.0',
            'aragog_engine_inflight{engine="tiny-m@h:2",model="tiny-m"} 1.0',
            'aragog_engine_inflight{engine="tiny-m@h:3",model="tiny-m"} 2.0',
        ]
    )
    assert lp.gateway_load(page) == (3.0, {"tiny-s": 2.0, "tiny-m": 3.0})
    sat = {"tiny-s": 2, "tiny-m": 4}
    points = [
        (3.0, {"tiny-s": 2.0, "tiny-m": 3.0}),
        (1.0, {"tiny-s": 2.0, "tiny-m": 4.0}),
        (0.0, {}),
    ]
    assert lp.idle_while_queued(points, ["tiny-s", "tiny-m"], sat) == (2, 0.5)
    assert lp.idle_while_queued(points, ["tiny-s"], sat) == (2, 0.0)
    assert math.isnan(lp.idle_while_queued([(0.0, {})], ["tiny-s"], sat)[1])


def test_call_stats() -> None:
    s = lp.Sample("p", 1, 0.0, 1.0, None, {}, 0.0, [("s", 0.2, 16), ("s", 0.4, 14), ("l", 1.0, 16)])
    assert lp.call_stats([s]) == {"l": (1, 1.0, 16.0), "s": (2, pytest.approx(0.3), 15.0)}
