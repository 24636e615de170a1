from __future__ import annotations

import itertools

import pytest

from aragog.scheduler.curves import (
    Calibration,
    ThroughputCurve,
    default_curve,
    knee,
    load_calibration,
    save_calibration,
)
from tests.scheduler.fleet import table


def test_stage_masks_match_configurations() -> None:
    t = table("w", {"a": ["s", "m", "l"], "b": ["s", "l"], "c": ["m", "l", "s"]})
    assert t.size == 18
    for i, cfg in enumerate(t.configs):
        for stage, model in enumerate(cfg):
            for m, sm in zip(t.stage_models[stage], t.stage_masks[stage], strict=True):
                assert bool(sm >> i & 1) == (m == model)


def test_narrowing_projection_and_fallbacks() -> None:
    t = table("w", {"a": ["s", "l"], "b": ["s", "l"]})
    viable = {("s", "l"), ("l", "l")}
    mask = t.narrowed(viable, {})
    assert set(t.members(mask)) == viable
    assert t.allowed(mask, 0) == ("s", "l") and t.allowed(mask, 1) == ("l",)
    assert set(t.members(t.narrowed(viable, {"a": "s"}))) == {("s", "l")}
    # choices that contradict C(r) are facts: they win over the router's set
    assert set(t.members(t.narrowed(viable, {"b": "s"}))) == {("s", "s"), ("l", "s")}
    # configurations the workflow does not have are ignored; empty means all
    assert t.narrowed({("x", "y")}, {}) == t.full
    assert t.cheapest(t.full, {"s": 1, "l": 5}) == ("s", "s")


@pytest.mark.parametrize(
    ("load", "rate"), [(0, 0.0), (1, 2.0), (2, 4.0), (3, 5.0), (4, 6.0), (10, 6.0), (-1, 0.0)]
)
def test_curve_is_piecewise_linear_then_flat(load: float, rate: float) -> None:
    assert ThroughputCurve.of([(2, 4.0), (4, 6.0)]).at(load) == pytest.approx(rate)


def test_default_curve_and_knee() -> None:
    c = default_curve(4, cost=2.0)
    assert c.marginal(6) == (0.5, 0.5, 0.5, 0.5, 0.0, 0.0)
    pts = [(1, 10.0), (2, 19.0), (4, 30.0), (8, 39.0), (16, 40.0), (32, 40.5)]
    assert knee(pts) == 8


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_calibration_round_trips(tmp_path: object, suffix: str) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    cal = Calibration("m", 8, ((1.0, 2.0), (8.0, 9.0)), max_tokens=16, url="http://x")
    path = tmp_path / f"cal{suffix}"
    save_calibration(cal, path)
    assert load_calibration(path) == cal


def test_periodic_masks_on_a_bigger_workflow() -> None:
    stages = {f"s{i}": ["a", "b", "c"] for i in range(5)}
    t = table("w", stages)
    assert t.size == 243
    configs = list(itertools.product(*stages.values()))
    assert t.configs == tuple(configs)
    assert t.stage_masks[2][1].bit_count() == 81
