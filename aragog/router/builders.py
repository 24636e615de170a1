"""Real labels from ../shared/data for workflows whose outcome follows exactly from recorded
single-model answers (DESIGN.md §4): voting on MMLU-Pro, agree-or-escalate cascades on
ZeroEval GSM8K and MATH level 5.

Fleet model names (as in the workflow specs) map to the recorded model columns here, and
nowhere else.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aragog.router.labels import LabelRow, LabelSet
from aragog.router.rules import CascadeRule, Rule, VotingRule

VOTING_MMLU_MODELS = {
    "phi-3-mini": "Phi-3-mini-4k-instruct",
    "llama-3.1-8b": "Meta-Llama-3_1-8B-Instruct",
    "llama-3.1-70b": "Meta-Llama-3_1-70B-Instruct",
}
CASCADE_GSM8K_MODELS = {
    "gemma-2-2b": "gemma-2-2b-it",
    "gemma-2-9b": "gemma-2-9b-it",
    "gemma-2-27b": "gemma-2-27b-it@together",
}
CASCADE_MATH_MODELS = {
    "qwen2.5-3b": "Qwen2.5-3B-Instruct",
    "qwen2.5-7b": "Qwen2.5-7B-Instruct",
    "qwen2.5-32b": "Qwen2.5-32B-Instruct",
}
VOTING_RULE = VotingRule(("voter1", "voter2", "voter3", "voter4"), "aggregate")
CASCADE_RULE = CascadeRule(("solver_a", "solver_b"), "judge")


@dataclass(frozen=True)
class Builder:
    workflow: str
    build: Callable[[Path], LabelSet]


def default_data_dir() -> Path:
    """``<repo>/../shared/data``, where CI keeps its copy."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        key = reader.fieldnames[0] if reader.fieldnames else "id"
        return {row[key]: row for row in reader}


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def mmlu_text(question: str, options: list[str]) -> str:
    """The voters' prompt body: question then lettered options."""
    buf = io.StringIO()
    buf.write(question.strip())
    for i, o in enumerate(options):
        buf.write(f"\n{chr(ord('A') + i)}. {o}")
    return buf.getvalue()


def build_voting_mmlu(data_dir: Path, models: Mapping[str, str] = VOTING_MMLU_MODELS) -> LabelSet:
    preds = _read_csv(data_dir / "mmlu_pro" / "preds.csv.gz")
    rows = []
    for q in _read_jsonl(data_dir / "mmlu_pro" / "questions.jsonl.gz"):
        qid = str(q["question_id"])
        if qid not in preds:
            continue
        answers = {m: preds[qid][col].strip() for m, col in models.items()}
        gold = str(q["answer"])
        options = q["options"]
        assert isinstance(options, list)
        rows.append(
            LabelRow(
                qid,
                mmlu_text(str(q["question"]), [str(o) for o in options]),
                answers=answers,
                correct={m: a == gold for m, a in answers.items()},
            )
        )
    return _labelset(
        "voting-mmlu", "mmlu_pro (TIGER-AI-Lab/MMLU-Pro f418b116)", models, VOTING_RULE, rows
    )


def normalize_answer(a: str) -> str:
    """Numbers compare by value (``"18.0" == "18"``); anything else verbatim, trimmed."""
    s = a.strip().replace(",", "").removeprefix("$")
    try:
        x = float(s)
    except ValueError:
        return a.strip()
    return f"{x:.10g}"


def build_cascade_zeroeval(
    data_dir: Path, task: str, workflow: str, models: Mapping[str, str]
) -> LabelSet:
    base = data_dir / "zeroeval" / task
    answers = _read_csv(base / "answers.csv.gz")
    correct = _read_csv(base / "correct.csv.gz")
    rows = []
    for q in _read_jsonl(base / "questions.jsonl.gz"):
        qid = str(q["id"])
        if qid not in answers or qid not in correct:
            continue
        rows.append(
            LabelRow(
                qid,
                str(q["question"]).strip(),
                answers={m: normalize_answer(answers[qid][col]) for m, col in models.items()},
                correct={m: correct[qid][col].strip() == "1" for m, col in models.items()},
            )
        )
    source = f"zeroeval/{task} (yuchenlin/ZeroEval 570c6269)"
    return _labelset(workflow, source, models, CASCADE_RULE, rows)


def _labelset(
    workflow: str, source: str, models: Mapping[str, str], rule: Rule, rows: list[LabelRow]
) -> LabelSet:
    recorded = ", ".join(f"{m}={c}" for m, c in models.items())
    return LabelSet(
        workflow=workflow,
        source=f"{source}; {recorded}",
        synthetic=False,
        models=tuple(models),
        rule=rule,
        configurations=None,
        rows=tuple(rows),
    )


BUILDERS: Mapping[str, Builder] = {
    b.workflow: b
    for b in (
        Builder("voting-mmlu", build_voting_mmlu),
        Builder(
            "cascade-gsm8k",
            lambda d: build_cascade_zeroeval(d, "gsm", "cascade-gsm8k", CASCADE_GSM8K_MODELS),
        ),
        Builder(
            "cascade-math",
            lambda d: build_cascade_zeroeval(d, "math-l5", "cascade-math", CASCADE_MATH_MODELS),
        ),
    )
}
