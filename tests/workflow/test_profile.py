"""``aragog profile``: the monotone skipping core, and profiling against the gateway app with
scripted engines (resumable journal, labels that ``aragog router train`` reads)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from aragog.config import ConfigError
from aragog.profile import (
    Example,
    Journal,
    ProfileError,
    Profiler,
    dominance,
    estimate,
    next_config,
    outcomes,
    profile_to_file,
    read_examples,
    routing_text,
)
from aragog.router.embedders import make_embedder
from aragog.router.labels import read_labels
from aragog.router.train import TrainOptions, train_router
from tests.workflow.specs import CASCADE, CHAIN
from tests.workflow.test_executor_api import Env

COST = {"small": 1.0, "large": 8.0}
CONFIGS = tuple(CHAIN.configurations())  # (s,s) (s,l) (l,s) (l,l)
DOM = dominance(CONFIGS, COST)
ORDER = [0, 1, 2, 3]  # cheapest first: 2, 9, 9, 16


def drive(truth: list[bool], exhaustive: bool = False) -> tuple[list[int], tuple[bool, ...]]:
    known: dict[int, bool] = {}
    ran = []
    while (j := next_config(known, ORDER, DOM, 3, exhaustive)) is not None:
        ran.append(j)
        known[j] = truth[j]
    return ran, outcomes(known, 4, DOM)


@pytest.mark.parametrize(("truth", "runs", "labels"), [
    # c_max wrong: every configuration viable, one run
    ([True, True, True, False], [3], (False, False, False, False)),
    # the cheapest right: everything above it right, two runs
    ([True, True, True, True], [3, 0], (True, True, True, True)),
    # only the final stage matters: (s,l) right implies (l,l); (l,s) wrong implies (s,s)
    ([False, True, False, True], [3, 0, 1, 2], (False, True, False, True)),
])
def test_monotone_skipping(truth: list[bool], runs: list[int], labels: tuple[bool, ...]) -> None:
    assert drive(truth) == (runs, labels)


def test_exhaustive_runs_everything() -> None:
    ran, labels = drive([True, False, True, False], exhaustive=True)
    assert sorted(ran) == [0, 1, 2, 3] and labels == (True, False, True, False)


def test_estimate_and_routing_text() -> None:
    est = estimate(CHAIN, COST, 10)
    assert (est.max_runs, est.min_runs, est.max_calls, est.max_cost) == (40, 10, 80, 360.0)
    assert "10 inputs x 4 configurations" in est.describe()
    assert routing_text(CHAIN, "hi") == "Q: hi"


def test_read_examples_names_bad_lines(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": "a", "input": "x", "expected": 1}\n{nope\n{"input": "y"}\n\n'
                 '{"id": "a", "input": "z", "expected": 2}\n')
    with pytest.raises(ConfigError) as err:
        read_examples(p)
    assert [e.split(":")[0] for e in err.value.problems] == ["line 2", "line 3", "line 5"]


async def test_profile_through_the_gateway_resumes_and_trains(tmp_path: Path) -> None:
    env = Env({"chain": CHAIN}, profiling=True)
    await env.gw.poller.poll_once()
    runs = 0

    def count() -> None:
        nonlocal runs
        runs += 1

    examples = [Example(f"q{i}", f"{'easy' if i % 2 else 'hard'} question {i}", 42)
                for i in range(12)]
    prof = Profiler(env.client, CHAIN, COST, concurrency=4, on_run=count)
    journal_path = tmp_path / "out.partial.jsonl"
    journal = Journal(journal_path, CHAIN)
    labels = await prof.profile(examples[:6], journal)  # "interrupted" after half the set
    journal.close()
    assert runs == 3 * 2 + 3 * 4  # easy: c_max + cheapest; hard: all four, none implied
    journal = Journal(journal_path, CHAIN)
    labels = await prof.profile(examples, journal)
    journal.close()
    assert runs == 6 * 2 + 6 * 4  # the first six were not run again
    by_id = {r.id: r.config_correct for r in labels.rows}
    assert by_id["q1"] == (True, True, True, True)
    assert by_id["q0"] == (False, True, False, True)  # right iff the final stage is large
    assert labels.configurations == CONFIGS and labels.rule is None
    # ``aragog router train`` takes them as they are
    art, _ = await train_router(labels, CHAIN, COST, make_embedder("hashing:256"),
                                TrainOptions(folds=2))
    assert art.workflow == "chain" and len(art.configurations) == 4
    await env.client.aclose()


async def test_journal_rejects_another_workflow(tmp_path: Path) -> None:
    Journal(tmp_path / "j", CHAIN).close()
    with pytest.raises(ProfileError, match="another workflow"):
        Journal(tmp_path / "j", CASCADE).close()


async def test_profile_without_scorer_or_profiling_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no scorer"):
        Profiler(httpx.AsyncClient(), CHAIN.model_copy(update={"scorer": None}), COST)
    env = Env({"chain": CHAIN})  # profiling off
    await env.gw.poller.poll_once()
    prof = Profiler(env.client, CHAIN, COST)
    journal = Journal(tmp_path / "j", CHAIN)
    with pytest.raises(ExceptionGroup) as eg:
        await prof.profile([Example("a", "q", 1)], journal)
    journal.close()
    assert "profiling: true" in str(eg.value.exceptions[0])
    await env.client.aclose()


def test_truncated_journal_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path, CHAIN).close()
    with path.open("a") as f:
        f.write(json.dumps({"id": "a", "config": 3, "correct": True, "answer": "42"}) + "\n")
        f.write('{"id": "a", "con')
    j = Journal(path, CHAIN)
    j.record("a", 0, True, "42")
    j.close()
    again = Journal(path, CHAIN)
    again.close()
    assert again.done == {"a": {3: True, 0: True}}


async def test_profile_to_file_writes_labels(tmp_path: Path) -> None:
    env = Env({"chain": CHAIN}, profiling=True)
    await env.gw.poller.poll_once()
    out = tmp_path / "chain.labels.jsonl.gz"
    prof = Profiler(env.client, CHAIN, COST)
    await profile_to_file(prof, [Example("q", "hard q", 42)], out)
    labels = read_labels(out)
    assert labels.workflow == "chain" and not labels.synthetic
    assert [(r.id, r.text, r.config_correct) for r in labels.rows] == [
        ("q", "Q: hard q", (False, True, False, True))
    ]
    assert (tmp_path / "chain.labels.jsonl.gz.partial.jsonl").exists()
    await env.client.aclose()
