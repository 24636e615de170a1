from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aragog.config import ConfigError
from aragog.router.builders import BUILDERS, default_data_dir, normalize_answer
from aragog.router.labels import (
    LabelRow,
    LabelSet,
    outcomes,
    pattern,
    read_labels,
    split_of,
    write_labels,
)
from tests.router.conftest import COST, cascade_spec, toy_labels


def test_accurate_is_correct_or_cmax_wrong() -> None:
    rows = (
        LabelRow("1", "t", {"s": "1", "m": "2", "l": "3"}, {"s": True, "m": False, "l": False}),
        LabelRow("2", "t", {"s": "1", "m": "2", "l": "3"}, {"s": False, "m": False, "l": True}),
    )
    labels = LabelSet("cascade-toy", "", True, ("s", "m", "l"), toy_labels(1).rule, None, rows)
    o = outcomes(labels, cascade_spec(), COST)
    assert o.configs[o.largest] == ("l", "l", "l")
    assert o.viable[0].all()  # c_max wrong: every configuration is "accurate"
    i = o.configs.index(("s", "s", "l"))  # solvers agree on a wrong answer
    assert not o.viable[1, i]
    j = o.configs.index(("s", "m", "l"))  # disagree -> judge l answers correctly
    assert o.viable[1, j] and o.correct[1, j]
    assert o.cost[1, i] == 2.0 and o.cost[1, j] == 21.0  # the judge only runs on disagreement


def test_pattern_collapses_letters() -> None:
    a = pattern(["x", "y"], {"x": "B", "y": "B"}, {"x": True, "y": True})
    b = pattern(["x", "y"], {"x": "D", "y": "D"}, {"x": True, "y": True})
    assert a == b == ((0, True), (0, True))
    assert pattern(["x"], {"x": ""}, {"x": True}) == ((-1, False),)


def test_roundtrip(tmp_path: Path) -> None:
    labels = toy_labels(20)
    write_labels(tmp_path / "l.jsonl.gz", labels)
    assert read_labels(tmp_path / "l.jsonl.gz") == labels


def test_per_configuration_format(tmp_path: Path) -> None:
    spec = cascade_spec()
    configs = tuple(spec.configurations())
    row = LabelRow("1", "t", config_correct=tuple(c[2] == "l" for c in configs))
    labels = LabelSet("cascade-toy", "SYNTHETIC", True, (), None, configs, (row,))
    write_labels(tmp_path / "c.jsonl.gz", labels)
    o = outcomes(read_labels(tmp_path / "c.jsonl.gz"), spec, COST)
    assert o.correct[0].sum() == 9


def test_mismatched_spec_is_rejected() -> None:
    with pytest.raises(ConfigError, match="spec is 'other'"):
        outcomes(toy_labels(5), cascade_spec("other"), COST)


def test_splits_fixed_by_seed() -> None:
    ids = [str(i) for i in range(3000)]
    s0 = [split_of(i, 0) for i in ids]
    assert s0 == [split_of(i, 0) for i in ids]
    assert s0 != [split_of(i, 1) for i in ids]
    assert 0.55 < s0.count("train") / 3000 < 0.65


@pytest.mark.parametrize(("raw", "norm"), [("18.0", "18"), ("$1,000", "1000"), (" x+1 ", "x+1")])
def test_normalize_answer(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


@pytest.mark.skipif(not default_data_dir().exists(), reason="no ../shared/data")
def test_real_builders_match_recorded_accuracy() -> None:
    gsm = BUILDERS["cascade-gsm8k"].build(default_data_dir())
    assert len(gsm.rows) == 1319
    acc = np.mean([r.correct["gemma-2-9b"] for r in gsm.rows if r.correct])
    assert 0.85 < acc < 0.89  # README: Gemma-2 9B 0.87 on GSM8K
