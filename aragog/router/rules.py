"""Workflow outcome rules: the exact result of a configuration from recorded model answers.

A rule sees, for one input, each candidate model's recorded answer (``""`` when none was
extracted) and whether that answer is correct, and returns whether the configuration's final
answer is correct plus which stages actually ran (a cascade's judge only runs on
disagreement), so realised cost is exact too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from aragog.workflow.spec import Configuration, WorkflowSpec


@dataclass(frozen=True)
class Outcome:
    """Final correctness of one configuration on one input, and the stages that ran."""

    correct: bool
    called: tuple[bool, ...]


def _answers_alone(model: str, answers: Mapping[str, str], correct: Mapping[str, bool]) -> bool:
    """The final answer is ``model``'s own (an aggregator on a tie, a judge): right iff it
    gave one and that one is correct."""
    return bool(answers[model]) and correct[model]


@dataclass(frozen=True)
class VotingRule:
    """Plurality of the voters' answers (empty answers abstain).

    On a tie, including a vote where everyone abstained, the aggregator answers the question
    itself: its own recorded answer is final. The aggregator stage always runs.
    """

    voters: tuple[str, ...]
    aggregator: str
    kind: Literal["voting"] = "voting"

    def stages(self) -> tuple[str, ...]:
        return (*self.voters, self.aggregator)

    def outcome(
        self,
        config: Mapping[str, str],
        answers: Mapping[str, str],
        correct: Mapping[str, bool],
    ) -> Outcome:
        votes = Counter(answers[config[v]] for v in self.voters if answers[config[v]])
        top = votes.most_common()
        if top and (len(top) == 1 or top[0][1] > top[1][1]):
            winner = top[0][0]
            ok = any(answers[m] == winner and correct[m] for m in answers)
        else:
            ok = _answers_alone(config[self.aggregator], answers, correct)
        return Outcome(ok, (True,) * (len(self.voters) + 1))


@dataclass(frozen=True)
class CascadeRule:
    """Agree-or-escalate: two solvers run in parallel; if their (non-empty) answers agree that
    answer is final, otherwise the judge stage answers on its own."""

    solvers: tuple[str, str]
    judge: str
    kind: Literal["cascade"] = "cascade"

    def stages(self) -> tuple[str, ...]:
        return (*self.solvers, self.judge)

    def outcome(
        self,
        config: Mapping[str, str],
        answers: Mapping[str, str],
        correct: Mapping[str, bool],
    ) -> Outcome:
        a, b = (config[s] for s in self.solvers)
        if answers[a] and answers[a] == answers[b]:
            return Outcome(correct[a], (True, True, False))
        return Outcome(_answers_alone(config[self.judge], answers, correct), (True, True, True))


Rule = VotingRule | CascadeRule


def check_rule(rule: Rule, spec: WorkflowSpec) -> list[str]:
    """Problems with ``rule`` against ``spec``; empty when the rule covers the stages exactly."""
    if sorted(rule.stages()) != sorted(spec.stage_names):
        return [
            f"workflows[{spec.name}]: rule stages {sorted(rule.stages())} "
            f"do not match the spec's {sorted(spec.stage_names)}"
        ]
    return []


def outcome_for(
    rule: Rule,
    spec: WorkflowSpec,
    config: Configuration,
    answers: Mapping[str, str],
    correct: Mapping[str, bool],
) -> Outcome:
    """Evaluate ``rule`` for a configuration given in spec stage order; ``called`` comes back
    in spec stage order too."""
    by_stage = dict(zip(spec.stage_names, config, strict=True))
    out = rule.outcome(by_stage, answers, correct)
    order = rule.stages()
    called = tuple(out.called[order.index(s)] for s in spec.stage_names)
    return Outcome(out.correct, called)


def config_cost(config: Sequence[str], called: Sequence[bool], cost: Mapping[str, float]) -> float:
    return sum(cost[m] for m, c in zip(config, called, strict=True) if c)
