"""RESULTS.md generation from the benchmark's in-memory results."""

from __future__ import annotations

from pathlib import Path

from aragog.sim.experiments import POLICIES, Point
from aragog.sim.perf import Check
from aragog.sim.report import Job, write_results


def point(policy: str) -> Point:
    return Point("wf", policy, 2.0, 10, 10, 1.9, 1.0, 2.0, 3.0, 0.6, 0.6, 50.0, 0, False, 0.1)


def test_tables_ratios_and_analysis(tmp_path: Path) -> None:
    (tmp_path / "analysis.md").write_text("## Reading\nhand-written\n")
    maxes = {Job("wf", p): 4.0 for p in POLICIES}
    maxes[Job("wf", "aragog")] = 6.0
    maxes[Job("wf", "aragog", width=1, oracle=True)] = 9.0
    out = tmp_path / "RESULTS.md"
    write_results(
        out,
        [Check("x", 1.0, 1.1)],
        {"wf": 10.0},
        maxes,
        {("wf", p): point(p) for p in POLICIES},
        {"wf": 2.0},
        seed=0,
        quick=True,
        n=10,
        wall_s=60.0,
    )
    text = out.read_text()
    assert "| x | 1.00 | 1.10 | +10% |" in text
    assert "| +50% | +50% |" in text  # Aragog 6 against per-input 4 and per-workflow 4
    assert "beam 1, 8 GPUs, Poisson, oracle C(r) | 9.00 | 6.00 |" in text
    assert text.rstrip().endswith("hand-written")
