"""``aragog profile``: run a workflow's configurations over a labelled set and write the
labels file ``aragog router train`` reads.

Per input the all-largest configuration runs first: when it is wrong every configuration is
viable and nothing else needs running. Otherwise configurations run cheapest first and the
monotone structure fills in the rest: a correct configuration implies every configuration
at least as large at every stage is correct, a wrong one that every configuration at most
as large is wrong. That is the router's own assumption (its closure); ``exhaustive`` turns
it off. Results append to ``OUT.partial.jsonl`` as they arrive, so a rerun resumes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from aragog.client import arun
from aragog.config import ConfigError
from aragog.router.labels import LabelRow, LabelSet, write_labels
from aragog.workflow.executor import prompt_of
from aragog.workflow.scorers import score
from aragog.workflow.spec import Configuration, WorkflowSpec
from aragog.workflow.template import INPUT, TemplateError, render

Known = Mapping[int, bool]
_RETRIES = 8


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    input: object
    expected: object


class ProfileError(Exception):
    """A problem that stops profiling; the message says what to fix."""


def read_examples(path: Path) -> list[Example]:
    """JSONL rows ``{"id"?, "input", "expected"}``; every bad line is named."""
    out, problems, seen = [], [], set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"line {n}: invalid JSON ({err})")
            continue
        if not isinstance(row, dict) or "input" not in row or "expected" not in row:
            problems.append(f"line {n}: needs 'input' and 'expected'")
            continue
        rid = str(row.get("id", n))
        if rid in seen:
            problems.append(f"line {n}: duplicate id {rid!r}")
        seen.add(rid)
        out.append(Example(rid, row["input"], row["expected"]))
    if problems:
        raise ConfigError(str(path), problems)
    return out


# -- the pure core: which configuration to run next, and what the runs imply -------------


def status(j: int, known: Known, dom: Sequence[Sequence[bool]]) -> bool | None:
    """Outcome of configuration j, measured or implied by monotonicity; None if open.
    ``dom[i][j]``: j puts a model at least as large as i's at every stage."""
    if j in known:
        return known[j]
    if any(ok and dom[c][j] for c, ok in known.items()):
        return True
    if any(not ok and dom[j][c] for c, ok in known.items()):
        return False
    return None


def next_config(
    known: Known,
    order: Sequence[int],
    dom: Sequence[Sequence[bool]],
    largest: int,
    exhaustive: bool = False,
) -> int | None:
    """The next configuration to run for one input (``order``: cheapest first), or None
    when every outcome the labels need is known."""
    if largest not in known:
        return largest
    if not known[largest] and not exhaustive:
        return None  # c_max wrong: every configuration is viable whatever it answers
    for j in order:
        if j not in known and (exhaustive or status(j, known, dom) is None):
            return j
    return None


def outcomes(known: Known, k: int, dom: Sequence[Sequence[bool]]) -> tuple[bool, ...]:
    """Per configuration: correct as measured or implied; False where nothing is implied
    (only when c_max is wrong, where viability is True whatever the value)."""
    return tuple(bool(status(j, known, dom)) for j in range(k))


def dominance(configs: Sequence[Configuration], cost: Mapping[str, float]) -> list[list[bool]]:
    return [
        [all(cost[a] <= cost[b] for a, b in zip(ci, cj, strict=True)) for cj in configs]
        for ci in configs
    ]


@dataclass(frozen=True)
class Estimate:
    inputs: int
    configurations: int
    max_runs: int
    min_runs: int
    max_calls: int
    max_cost: float  # sum of model costs over every call, all runs

    def describe(self) -> str:
        return (
            f"{self.inputs} inputs x {self.configurations} configurations: at most "
            f"{self.max_runs} runs ({self.max_calls} stage calls, cost {self.max_cost:g} in "
            f"the fleet's model-cost units); monotone skipping needs as few as "
            f"{self.min_runs}"
        )


def estimate(spec: WorkflowSpec, cost: Mapping[str, float], pending: int) -> Estimate:
    configs = list(spec.configurations())
    per_input = sum(sum(cost[m] for m in c) for c in configs)
    return Estimate(
        pending,
        len(configs),
        pending * len(configs),
        pending,
        pending * len(configs) * len(spec.stages),
        pending * per_input,
    )


def routing_text(spec: WorkflowSpec, value: object) -> str:
    """What the router will read for this input at serve time: the messages of the
    request's first call (the first stage with no parents)."""
    first = next(s for s in spec.stages if not spec.parents(s.name))
    scope = {INPUT: value}
    try:
        parts = [
            render(t, scope, frozenset({INPUT}))
            for t in (first.system, prompt_of(spec, first))
            if t
        ]
    except TemplateError as err:
        raise ProfileError(f"input does not fit stage {first.name!r}: {err}") from None
    return "\n".join(parts)


# -- the shell: runs through a gateway, the resumable journal, the labels file ----------


class Journal:
    """``OUT.partial.jsonl``: a header naming the workflow, then one measured run a line."""

    def __init__(self, path: Path, spec: WorkflowSpec) -> None:
        self.path = path
        header = {"workflow": spec.name, "configurations": [list(c) for c in spec.configurations()]}
        self.done: dict[str, dict[int, bool]] = {}
        if path.exists():
            lines = path.read_text().splitlines()
            if not lines or json.loads(lines[0]) != header:
                raise ProfileError(f"{path}: from another workflow or spec; delete it to restart")
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line being written when the last run stopped
                self.done.setdefault(row["id"], {})[int(row["config"])] = bool(row["correct"])
        else:
            path.write_text(json.dumps(header) + "\n")
        self._file = path.open("a")
        if not path.read_text().endswith("\n"):
            self._file.write("\n")  # end the line cut short when the last run stopped

    def record(self, rid: str, config: int, correct: bool, answer: object) -> None:
        self.done.setdefault(rid, {})[config] = correct
        row = {"id": rid, "config": config, "correct": correct, "answer": answer}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class Profiler:
    client: httpx.AsyncClient  # base URL: a gateway with profiling enabled
    spec: WorkflowSpec
    cost: Mapping[str, float]
    concurrency: int = 4
    exhaustive: bool = False
    on_run: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        if self.spec.scorer is None:
            raise ProfileError(f"workflow {self.spec.name!r} has no scorer; add one to the spec")
        self.configs = tuple(self.spec.configurations())
        self.dom = dominance(self.configs, self.cost)
        self.largest = self.configs.index(self.spec.largest(self.cost))
        totals = [sum(self.cost[m] for m in c) for c in self.configs]
        self.order = sorted(range(len(self.configs)), key=lambda j: totals[j])

    async def profile(self, examples: Sequence[Example], journal: Journal) -> LabelSet:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(ex: Example) -> None:
            async with gate:
                await self._input(ex, journal)

        async with asyncio.TaskGroup() as tg:
            for ex in examples:
                tg.create_task(one(ex))
        rows = tuple(
            LabelRow(
                ex.id,
                routing_text(self.spec, ex.input),
                config_correct=outcomes(journal.done.get(ex.id, {}), len(self.configs), self.dom),
            )
            for ex in examples
        )
        models = sorted({m for s in self.spec.stages for m in s.models})
        return LabelSet(
            self.spec.name, "aragog profile", False, tuple(models), None, self.configs, rows
        )

    async def _input(self, ex: Example, journal: Journal) -> None:
        known = journal.done.setdefault(ex.id, {})
        while (
            j := next_config(known, self.order, self.dom, self.largest, self.exhaustive)
        ) is not None:
            answer, ok = await self._run(ex, self.configs[j])
            journal.record(ex.id, j, ok, answer)
            self.on_run()

    async def _run(self, ex: Example, config: Configuration) -> tuple[object, bool]:
        assert self.spec.scorer is not None
        forced = dict(zip(self.spec.stage_names, config, strict=True))
        for attempt in range(_RETRIES):
            resp = await arun(self.client, self.spec.name, ex.input, configuration=forced)
            if resp.status_code == 200:
                answer = resp.json()["answer"]
                return answer, score(self.spec.scorer, answer, ex.expected)
            if resp.status_code in (429, 503, 504) and attempt + 1 < _RETRIES:
                await asyncio.sleep(float(resp.headers.get("retry-after", 0.5 * 2**attempt)))
                continue
            if resp.status_code == 502:  # the configuration could not answer: a wrong answer
                return None, False
            raise ProfileError(f"input {ex.id!r}, configuration {forced}: {_message(resp)}")
        raise AssertionError("unreachable")


def _message(resp: httpx.Response) -> str:
    try:
        return f"{resp.status_code} {resp.json()['error']['message']}"
    except Exception:  # not an Aragog error body
        return f"{resp.status_code} {resp.text[:200]}"


async def profile_to_file(profiler: Profiler, examples: Sequence[Example], out: Path) -> LabelSet:
    journal = Journal(out.with_name(out.name + ".partial.jsonl"), profiler.spec)
    try:
        labels = await profiler.profile(examples, journal)
    finally:
        journal.close()
    write_labels(out, labels)
    return labels


def pending(examples: Sequence[Example], out: Path) -> int:
    """Inputs with no run recorded yet (for the estimate of a resumed profile)."""
    path = out.with_name(out.name + ".partial.jsonl")
    if not path.exists():
        return len(examples)
    seen = {
        json.loads(line).get("id")
        for line in path.read_text().splitlines()[1:]
        if line.strip().endswith("}")
    }
    return sum(1 for ex in examples if ex.id not in seen)
