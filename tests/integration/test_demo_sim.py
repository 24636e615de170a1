"""``python -m aragog.demo --sim`` end to end on a few simulated requests (real recorded
answers, simulated H100 engines): it runs every policy and prints the comparison."""

from __future__ import annotations

import pytest

from aragog import demo
from aragog.router.builders import default_data_dir


def test_sim_demo_runs_every_policy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (default_data_dir() / "mmlu_pro").is_dir():
        pytest.skip("no recorded answers in ../shared/data")
    monkeypatch.setenv("COLUMNS", "160")  # rich would shorten policy names to fit 80
    rc = demo.main(["--sim", "--requests", "12", "--rate", "2", "--speed", "1e6"])
    assert rc == 0
    out = capsys.readouterr().out
    for policy in ("aragog", "per-workflow", "largest"):
        assert policy in out
    assert "accuracy" in out
