from __future__ import annotations

import pytest

from aragog.router.rules import CascadeRule, VotingRule

VOTE = VotingRule(("v1", "v2", "v3", "v4"), "agg")
CASCADE = CascadeRule(("a", "b"), "j")
# models x, y, z with their recorded answers; gold is "A"
ANS = {"x": "A", "y": "B", "z": "C", "e": ""}
OK = {"x": True, "y": False, "z": False, "e": False}


@pytest.mark.parametrize(
    ("voters", "agg", "correct"),
    [
        (("x", "x", "y", "z"), "y", True),  # plurality A wins
        (("y", "y", "x", "z"), "x", False),  # plurality B wins even though agg knows A
        (("x", "x", "y", "y"), "x", True),  # tie broken by the aggregator's answer
        (("x", "x", "y", "y"), "z", False),  # tie, aggregator answers C itself
        (("e", "e", "e", "x"), "y", True),  # empty answers abstain
        (("e", "e", "e", "e"), "x", True),  # everyone abstains: aggregator answers
        (("e", "e", "e", "e"), "e", False),
    ],
)
def test_voting(voters: tuple[str, ...], agg: str, correct: bool) -> None:
    config = dict(zip(VOTE.voters, voters, strict=True)) | {"agg": agg}
    out = VOTE.outcome(config, ANS, OK)
    assert out.correct is correct
    assert out.called == (True,) * 5


@pytest.mark.parametrize(
    ("a", "b", "j", "correct", "judge_called"),
    [
        ("x", "x", "y", True, False),  # agree: final, judge never runs
        ("y", "y", "x", False, False),  # agree on a wrong answer
        ("x", "y", "x", True, True),  # disagree: judge answers
        ("x", "y", "z", False, True),
        ("e", "e", "x", True, True),  # two empty answers do not "agree"
    ],
)
def test_cascade(a: str, b: str, j: str, correct: bool, judge_called: bool) -> None:
    out = CASCADE.outcome({"a": a, "b": b, "j": j}, ANS, OK)
    assert out.correct is correct
    assert out.called == (True, True, judge_called)
