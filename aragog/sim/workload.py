"""Real-data requests for the simulator: which question each request asks, the C(r) the real
router gives it, what each candidate model answered (for end-to-end accuracy) and how many
tokens it wrote (recorded output length, ~4 characters a token); arrivals Poisson or shaped
like the Splitwise conversation trace.

Prompt lengths are the question's tokens plus a stage template (stated here, not measured):
voters and solvers read the question; the aggregator and the judge also read the upstream
answers they weigh.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aragog.router.builders import CASCADE_GSM8K_MODELS, CASCADE_MATH_MODELS, VOTING_MMLU_MODELS
from aragog.router.labels import LabelSet
from aragog.workflow.spec import Configuration

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS = 48  # system prompt and instructions of a stage
MAX_OUTPUT_TOKENS = 2048  # max_tokens of every call
MAX_INPUT_TOKENS = 4096

OUTPUT_FILES: Mapping[str, tuple[str, Mapping[str, str]]] = {
    "voting-mmlu": ("mmlu_pro/output_chars.csv.gz", VOTING_MMLU_MODELS),
    "cascade-gsm8k": ("zeroeval/gsm/output_chars.csv.gz", CASCADE_GSM8K_MODELS),
    "cascade-math": ("zeroeval/math-l5/output_chars.csv.gz", CASCADE_MATH_MODELS),
}


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    prompt_tokens: int
    out_tokens: Mapping[str, int]  # fleet model -> recorded output length
    answers: Mapping[str, str]
    correct: Mapping[str, bool]
    viable: frozenset[Configuration]  # C(r) from the real router


@dataclass(frozen=True, slots=True)
class Arrival:
    request_id: str
    at: float
    question: Question


def tokens(chars: int) -> int:
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def output_lengths(data_dir: Path, workflow: str) -> dict[str, dict[str, int]]:
    """question id -> fleet model -> output tokens (recorded; 0 chars counts as 1 token)."""
    rel, models = OUTPUT_FILES[workflow]
    with gzip.open(data_dir / rel, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        key = (reader.fieldnames or ["id"])[0]
        return {
            row[key]: {
                m: min(MAX_OUTPUT_TOKENS, tokens(int(float(row[col] or 0))))
                for m, col in models.items()
            }
            for row in reader
        }


def questions(
    labels: LabelSet,
    lengths: Mapping[str, Mapping[str, int]],
    viable: Sequence[frozenset[Configuration]],
    keep: Sequence[bool],
) -> list[Question]:
    """Rows of ``labels`` where ``keep`` (the held-out split), with their C(r)."""
    out = []
    for row, c_r, k in zip(labels.rows, viable, keep, strict=True):
        if not k or row.id not in lengths or row.answers is None or row.correct is None:
            continue
        out.append(
            Question(
                row.id,
                min(MAX_INPUT_TOKENS, tokens(len(row.text))),
                lengths[row.id],
                row.answers,
                row.correct,
                c_r,
            )
        )
    return out


def poisson_times(rate: float, duration: float, rng: np.random.Generator) -> list[float]:
    n = int(rate * duration * 1.5) + 16
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return [float(x) for x in t[t < duration]]


def trace_times(
    trace: Sequence[float], rate: float, duration: float, rng: np.random.Generator
) -> list[float]:
    """Splitwise arrival times from a random offset, time-scaled to a mean of ``rate``:
    keeps the trace's burstiness (its inter-arrival shape), not its absolute load."""
    t = np.asarray(trace, dtype=np.float64)
    gaps = np.diff(t)
    gaps = gaps / gaps.mean() / rate
    start = int(rng.integers(0, len(gaps)))
    gaps = np.roll(gaps, -start)
    times = np.cumsum(gaps)
    return [float(x) for x in times[times < duration]]


def read_trace(path: Path) -> list[float]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return [float(r["arrived_at"]) for r in csv.DictReader(f)]


def arrivals(
    qs: Sequence[Question], times: Sequence[float], rng: np.random.Generator
) -> list[Arrival]:
    idx = rng.integers(0, len(qs), len(times))
    return [
        Arrival(f"r{i}", t, qs[int(j)]) for i, (t, j) in enumerate(zip(times, idx, strict=True))
    ]


def stage_prompt(stage: str, question: Question, upstream_out: Sequence[int]) -> int:
    """Prompt tokens of a call: template + question (+ the upstream answers it reads)."""
    return min(MAX_INPUT_TOKENS, TEMPLATE_TOKENS + question.prompt_tokens + sum(upstream_out))
