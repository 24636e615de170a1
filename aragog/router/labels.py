"""Router labels: the file format, the per-configuration outcome matrices and the splits.

File (gzip JSON lines): a header object, then one object per input.

Header: ``{"format": "aragog-labels/1", "workflow", "source", "synthetic", "models",
"rule": {"kind": "voting", "voters": [...], "aggregator": ...} |
{"kind": "cascade", "solvers": [a, b], "judge": ...} | null, "configurations": [[...]] | null}``

Rows, per recorded model (with a rule): ``{"id", "text", "answers": {model: str},
"correct": {model: 0|1}}``; or per configuration (no rule, ``configurations`` in the header):
``{"id", "text", "config_correct": [0|1, ...]}``.

accurate(c, q) = correct(c, q) or not correct(c_max, q).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from aragog.config import ConfigError
from aragog.router.rules import CascadeRule, Rule, VotingRule, check_rule, config_cost, outcome_for
from aragog.workflow.spec import Configuration, WorkflowSpec

FORMAT = "aragog-labels/1"
Split = Literal["train", "val", "test"]
BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LabelRow:
    id: str
    text: str
    answers: Mapping[str, str] | None = None
    correct: Mapping[str, bool] | None = None
    config_correct: tuple[bool, ...] | None = None


@dataclass(frozen=True)
class LabelSet:
    workflow: str
    source: str
    synthetic: bool
    models: tuple[str, ...]
    rule: Rule | None
    configurations: tuple[Configuration, ...] | None
    rows: tuple[LabelRow, ...]


@dataclass(frozen=True)
class Outcomes:
    """Per (input, configuration): correctness and realised cost; configurations in
    ``spec.configurations()`` order."""

    configs: tuple[Configuration, ...]
    correct: BoolArray  # (N, K)
    cost: FloatArray  # (N, K)
    largest: int  # index of c_max

    @property
    def viable(self) -> BoolArray:
        result: BoolArray = self.correct | ~self.correct[:, [self.largest]]
        return result


def write_labels(path: str | Path, labels: LabelSet) -> None:
    header: dict[str, Any] = {
        "format": FORMAT,
        "workflow": labels.workflow,
        "source": labels.source,
        "synthetic": labels.synthetic,
        "models": list(labels.models),
        "rule": _rule_to_json(labels.rule),
        "configurations": [list(c) for c in labels.configurations]
        if labels.configurations is not None
        else None,
    }
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(header) + "\n")
        for r in labels.rows:
            row: dict[str, Any] = {"id": r.id, "text": r.text}
            if r.config_correct is not None:
                row["config_correct"] = [int(x) for x in r.config_correct]
            else:
                row["answers"] = dict(r.answers or {})
                row["correct"] = {m: int(v) for m, v in (r.correct or {}).items()}
            f.write(json.dumps(row) + "\n")


def read_labels(path: str | Path) -> LabelSet:
    p = Path(path)
    try:
        with gzip.open(p, "rt", encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(str(p), [f"<file>: cannot read labels ({err})"]) from None
    if not lines or lines[0].get("format") != FORMAT:
        raise ConfigError(str(p), [f"<header>.format: expected {FORMAT!r}"])
    h = lines[0]
    configs = h.get("configurations")
    return LabelSet(
        workflow=h["workflow"],
        source=h.get("source", ""),
        synthetic=bool(h.get("synthetic", False)),
        models=tuple(h["models"]),
        rule=_rule_from_json(h.get("rule")),
        configurations=tuple(tuple(c) for c in configs) if configs is not None else None,
        rows=tuple(_row_from_json(r) for r in lines[1:]),
    )


def _row_from_json(r: Mapping[str, Any]) -> LabelRow:
    if "config_correct" in r:
        return LabelRow(
            r["id"], r["text"], config_correct=tuple(bool(x) for x in r["config_correct"])
        )
    return LabelRow(
        str(r["id"]),
        r["text"],
        answers=dict(r["answers"]),
        correct={m: bool(v) for m, v in r["correct"].items()},
    )


def _rule_to_json(rule: Rule | None) -> dict[str, Any] | None:
    if isinstance(rule, VotingRule):
        return {"kind": "voting", "voters": list(rule.voters), "aggregator": rule.aggregator}
    if isinstance(rule, CascadeRule):
        return {"kind": "cascade", "solvers": list(rule.solvers), "judge": rule.judge}
    return None


def _rule_from_json(d: Mapping[str, Any] | None) -> Rule | None:
    if d is None:
        return None
    if d["kind"] == "voting":
        return VotingRule(tuple(d["voters"]), d["aggregator"])
    if d["kind"] == "cascade":
        a, b = d["solvers"]
        return CascadeRule((a, b), d["judge"])
    raise ValueError(f"unknown rule kind {d['kind']!r}")


def check_labels(labels: LabelSet, spec: WorkflowSpec) -> list[str]:
    where = f"labels[{labels.workflow}]"
    problems = []
    if labels.workflow != spec.name:
        problems.append(
            f"{where}.workflow: labels are for {labels.workflow!r}, spec is {spec.name!r}"
        )
    if labels.rule is not None:
        problems += check_rule(labels.rule, spec)
        for s in spec.stages:
            missing = [m for m in s.models if m not in labels.models]
            if missing:
                problems.append(
                    f"{where}.models: no recorded answers for {missing} (stage {s.name})"
                )
    elif labels.configurations is None or set(labels.configurations) != set(spec.configurations()):
        problems.append(f"{where}.configurations: do not match the spec's configurations")
    return problems


def outcomes(labels: LabelSet, spec: WorkflowSpec, cost: Mapping[str, float]) -> Outcomes:
    """Correctness and realised cost of every configuration on every input.

    Rules only compare answers for equality, so inputs are grouped by their canonical
    outcome pattern and each pattern is evaluated once.
    """
    problems = check_labels(labels, spec)
    if problems:
        raise ConfigError(labels.workflow, problems)
    configs = tuple(spec.configurations())
    largest = configs.index(spec.largest(cost))
    if labels.rule is None:
        assert labels.configurations is not None
        col = [labels.configurations.index(c) for c in configs]
        correct = np.array(
            [[r.config_correct[i] for i in col] for r in labels.rows if r.config_correct]
        )
        static = np.array([sum(cost[m] for m in c) for c in configs], dtype=np.float64)
        return Outcomes(
            configs, correct.astype(bool), np.tile(static, (len(labels.rows), 1)), largest
        )
    rule = labels.rule
    models = sorted({m for s in spec.stages for m in s.models})
    cache: dict[tuple[tuple[int, bool], ...], tuple[list[bool], list[float]]] = {}
    correct_rows, cost_rows = [], []
    for r in labels.rows:
        key = pattern(models, r.answers or {}, r.correct or {})
        if key not in cache:
            ans = {m: str(k[0]) if k[0] >= 0 else "" for m, k in zip(models, key, strict=True)}
            ok = {m: k[1] for m, k in zip(models, key, strict=True)}
            outs = [outcome_for(rule, spec, c, ans, ok) for c in configs]
            cache[key] = (
                [o.correct for o in outs],
                [config_cost(c, o.called, cost) for c, o in zip(configs, outs, strict=True)],
            )
        correct_rows.append(cache[key][0])
        cost_rows.append(cache[key][1])
    return Outcomes(configs, np.array(correct_rows, dtype=bool), np.array(cost_rows), largest)


def pattern(
    models: Sequence[str], answers: Mapping[str, str], correct: Mapping[str, bool]
) -> tuple[tuple[int, bool], ...]:
    """Canonical (answer class, correct) per model: classes numbered by first appearance,
    -1 for no answer, so inputs that differ only in the letters they chose collapse."""
    classes: dict[str, int] = {}
    out = []
    for m in models:
        a = answers[m]
        if a:
            classes.setdefault(a, len(classes))
        out.append((classes[a] if a else -1, bool(a) and correct[m]))
    return tuple(out)


def split_of(input_id: str, seed: int, fractions: tuple[float, float] = (0.6, 0.2)) -> Split:
    """Deterministic split from a hash of (seed, id): stable under row order and subsetting."""
    h = hashlib.blake2b(f"{seed}:{input_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2**64
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def split_masks(ids: Iterable[str], seed: int) -> dict[Split, NDArray[np.bool_]]:
    s = np.array([split_of(i, seed) for i in ids])
    return {"train": s == "train", "val": s == "val", "test": s == "test"}
