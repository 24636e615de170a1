"""Scorers: is a workflow's final answer right, given the expected answer of a labelled input."""

from __future__ import annotations

import math
from typing import Literal

from aragog.workflow.parsing import Answer, canonical_number

ScorerKind = Literal["choice", "number", "exact", "contains"]


def score(kind: ScorerKind, answer: Answer, expected: object) -> bool:
    text = "\n".join(answer) if isinstance(answer, list) else answer
    want = str(expected)
    if kind == "choice":
        got = text.strip().upper()
        return bool(got) and got == want.strip().strip("().").upper()
    if kind == "number":
        return numbers_equal(text, want)
    if kind == "contains":
        return bool(want.strip()) and _norm(want) in _norm(text)
    return _norm(text) == _norm(want)


def numbers_equal(a: str, b: str) -> bool:
    x, y = canonical_number(a), canonical_number(b)
    if not x or not y:
        return False
    return math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9)


def _norm(s: str) -> str:
    """Case and whitespace do not make an answer wrong."""
    return " ".join(s.lower().split())
