"""How a stage's answer can come from its upstream stages rather than its own model.

``unless_agree``: the stage runs only when those stages' answers differ; when they agree
(and are not empty) their common answer is the stage's answer and it makes no call (the
agree-or-escalate cascade's judge). ``vote``: the stage runs, then its answer is the
plurality of those stages' answers, its own answer breaking ties (voting's aggregator). Both
match the outcome rules the router's labels are derived with (aragog/router/rules.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from aragog.workflow.parsing import Answer


def key(answer: Answer) -> str:
    return "\n".join(answer) if isinstance(answer, list) else answer


def agreed(answers: Sequence[Answer]) -> Answer | None:
    """The common answer when every one is the same and non-empty, else None."""
    if not answers or not key(answers[0]):
        return None
    first = key(answers[0])
    return answers[0] if all(key(a) == first for a in answers[1:]) else None


def plurality(votes: Sequence[Answer], own: Answer) -> Answer:
    """The most common non-empty vote; on a tie (or no votes) ``own``."""
    counts = Counter(key(v) for v in votes if key(v))
    top = counts.most_common(2)
    if top and (len(top) == 1 or top[0][1] > top[1][1]):
        return next(v for v in votes if key(v) == top[0][0])
    return own
