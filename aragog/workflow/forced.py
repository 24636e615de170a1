"""The forced configuration of a profiling run: ``X-Aragog-Configuration: gen=m1,judge=m2``.

Profiling measures each configuration's answers, so every stage of a request must run on
the model it names; the gateway accepts the header only with ``profiling: true``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aragog.workflow.spec import Configuration, WorkflowSpec

HEADER = "x-aragog-configuration"


def encode(configuration: Mapping[str, str]) -> str:
    return ",".join(f"{stage}={model}" for stage, model in configuration.items())


def parse(value: str, spec: WorkflowSpec) -> Configuration:
    """The configuration a header names, in spec stage order; ValueError says what is wrong."""
    given: dict[str, str] = {}
    for item in value.split(","):
        stage, sep, model = (p.strip() for p in item.partition("="))
        if not sep or not stage or not model:
            raise ValueError(f"{HEADER}: expected stage=model[,stage=model...], got {item!r}")
        if stage in given:
            raise ValueError(f"{HEADER}: stage {stage!r} given twice")
        given[stage] = model
    problems = [f"unknown stage {s!r}" for s in given if spec.stage(s) is None]
    for s in spec.stages:
        chosen = given.get(s.name)
        if chosen is None:
            problems.append(f"no model for stage {s.name!r}")
        elif chosen not in s.models:
            problems.append(f"{chosen!r} is not a candidate of stage {s.name!r}")
    if problems:
        raise ValueError(f"{HEADER}: " + "; ".join(problems))
    return tuple(given[s] for s in spec.stage_names)
