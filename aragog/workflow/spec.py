"""Workflow specs: stages, DAG edges and candidate models, validated against the fleet.

A *configuration* assigns one candidate model to every stage, in ``WorkflowSpec.stage_names``
order; the router and scheduler both speak in these tuples.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aragog.config import ConfigError, format_validation_error
from aragog.workflow.parsing import ParseKind
from aragog.workflow.scorers import ScorerKind
from aragog.workflow.template import INPUT, references

Configuration = tuple[str, ...]


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    models: list[str] = Field(min_length=1)
    # What the executor sends and reads (aragog/workflow/executor.py); routing ignores them.
    system: str | None = Field(default=None, description="system message template")
    prompt: str | None = Field(
        default=None, description="user message template; default: the input, then parents"
    )
    parse: ParseKind = "text"
    pattern: str | None = Field(default=None, description="parse: regex only")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    unless_agree: list[str] = Field(
        default=[], description="skip the call when these stages' answers agree"
    )
    vote: list[str] = Field(
        default=[], description="answer = plurality of these stages, own answer on ties"
    )


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    stages: list[StageSpec] = Field(min_length=1)
    edges: list[tuple[str, str]] = Field(
        default=[], description="(upstream stage, downstream stage) pairs of the DAG"
    )
    output: str | None = Field(default=None, description="final stage; default: the only sink")
    scorer: ScorerKind | None = Field(default=None, description="for `aragog profile`")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> StageSpec | None:
        return next((s for s in self.stages if s.name == name), None)

    def configurations(self) -> Iterator[Configuration]:
        return itertools.product(*(s.models for s in self.stages))

    def largest(self, cost: Mapping[str, float]) -> Configuration:
        """c_max: every stage on its most expensive candidate."""
        return tuple(max(s.models, key=lambda m: cost[m]) for s in self.stages)

    def depths(self) -> dict[str, int]:
        """Longest path (in edges) from each stage to a leaf of the DAG."""
        children: dict[str, list[str]] = {s: [] for s in self.stage_names}
        for a, b in self.edges:
            children[a].append(b)
        memo: dict[str, int] = {}

        def depth(s: str) -> int:
            if s not in memo:
                memo[s] = 1 + max((depth(c) for c in children[s]), default=-1)
            return memo[s]

        return {s: depth(s) for s in self.stage_names}

    def parents(self, stage: str) -> list[str]:
        return [a for a, b in self.edges if b == stage]

    def ancestors(self, stage: str) -> set[str]:
        seen: set[str] = set()
        todo = self.parents(stage)
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo += self.parents(s)
        return seen

    def final_stage(self) -> str | None:
        """The stage whose answer is the run's: ``output``, else the DAG's only sink."""
        if self.output is not None:
            return self.output
        sinks = [s for s in self.stage_names if not any(a == s for a, _ in self.edges)]
        return sinks[0] if len(sinks) == 1 else None


def check_workflow(spec: WorkflowSpec, fleet_models: Mapping[str, float], where: str) -> list[str]:
    """Problems with ``spec`` against a fleet (model name -> cost); empty when valid."""
    problems = []
    names = spec.stage_names
    for i, s in enumerate(spec.stages):
        if s.name in names[:i]:
            problems.append(f"{where}.stages[{i}].name: duplicate stage {s.name!r}")
        for m in s.models:
            if m not in fleet_models:
                problems.append(f"{where}.stages[{s.name}].models: unknown model {m!r}")
        if len(set(s.models)) != len(s.models):
            problems.append(f"{where}.stages[{s.name}].models: duplicate candidate")
    for k, (a, b) in enumerate(spec.edges):
        for end in (a, b):
            if end not in names:
                problems.append(f"{where}.edges[{k}]: unknown stage {end!r}")
    if not problems and _has_cycle(names, spec.edges):
        problems.append(f"{where}.edges: the stages do not form a DAG (cycle found)")
    if not problems:
        problems += _check_execution(spec, where)
    return problems


def _check_execution(spec: WorkflowSpec, where: str) -> list[str]:
    """What the executor needs: templates and combiners read only upstream stages."""
    problems = []
    for s in spec.stages:
        up = spec.ancestors(s.name)
        at = f"{where}.stages[{s.name}]"
        for field, template in (("system", s.system), ("prompt", s.prompt)):
            for path in references(template or ""):
                if path[0] != INPUT and path[0] not in up:
                    problems.append(
                        f"{at}.{field}: {{{{{'.'.join(path)}}}}} is neither the input nor "
                        "an upstream stage"
                    )
        for field, stages in (("unless_agree", s.unless_agree), ("vote", s.vote)):
            problems += [f"{at}.{field}: {u!r} is not upstream" for u in stages if u not in up]
        if s.parse == "regex":
            try:
                re.compile(s.pattern or "")
            except re.error as err:
                problems.append(f"{at}.pattern: invalid regular expression ({err})")
            if not s.pattern:
                problems.append(f"{at}.pattern: required with parse: regex")
    # Several sinks and no ``output`` is fine for routing-only specs; the executor says so.
    if spec.output is not None and spec.output not in spec.stage_names:
        problems.append(f"{where}.output: unknown stage {spec.output!r}")
    return problems


def _has_cycle(nodes: tuple[str, ...], edges: list[tuple[str, str]]) -> bool:
    indeg = dict.fromkeys(nodes, 0)
    for _, b in edges:
        indeg[b] += 1
    ready = [n for n, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for a, b in edges:
            if a == n:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    return seen != len(nodes)


def load_workflows(
    folder: str | Path, fleet_models: Mapping[str, float]
) -> dict[str, WorkflowSpec]:
    """Load and validate every ``*.yaml`` in ``folder``; raise one error listing all problems."""
    specs: dict[str, WorkflowSpec] = {}
    problems: list[str] = []
    for path in sorted(Path(folder).glob("*.y*ml")):
        try:
            spec = WorkflowSpec.model_validate(yaml.safe_load(path.read_text()))
        except yaml.YAMLError as err:
            problems.append(f"{path.name}: invalid YAML ({err})")
            continue
        except ValidationError as err:
            problems += [f"{path.name}: {line}" for line in format_validation_error(err)]
            continue
        where = f"workflows[{spec.name}]"
        if spec.name in specs:
            problems.append(f"{path.name}: {where}: defined twice")
        problems += [f"{path.name}: {p}" for p in check_workflow(spec, fleet_models, where)]
        specs[spec.name] = spec
    if problems:
        raise ConfigError(str(folder), problems)
    return specs
