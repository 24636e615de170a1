"""The agent apps in examples/ against the real fleet: each must run to the end, and every
one of its calls must reach the gateway as a tagged workflow call answered by an engine."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.conftest import scrape

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _answered(gateway_url: str, workflow: str) -> dict[str, float]:
    """stage -> calls the gateway answered with 200 for ``workflow`` so far."""
    out: dict[str, float] = {}
    for key, value in scrape(gateway_url).items():
        if (
            key.startswith("aragog_requests_total{")
            and f'workflow="{workflow}"' in key
            and 'status="200"' in key
        ):
            stage = key.split('stage="', 1)[1].split('"', 1)[0]
            out[stage] = out.get(stage, 0.0) + value
    return out


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def _check(
    gateway_url: str, workflow: str, stages: list[str], run: Callable[[], object]
) -> object:
    before = _answered(gateway_url, workflow)
    result = run()
    assert _delta(before, _answered(gateway_url, workflow)) == dict.fromkeys(stages, 1.0)
    return result


def test_openai_sdk_example(gateway_url: str) -> None:
    example = _load("openai_sdk_refine")
    placed = _check(
        gateway_url, "refine", ["generate", "critique", "refine"],
        lambda: example.run(gateway_url + "/v1"),
    )
    # The gateway's `largest` policy for this workflow: every stage on tiny-l.
    assert placed == dict.fromkeys(["generate", "critique", "refine"], "tiny-l")


def test_langchain_example(gateway_url: str) -> None:
    example = _load("langchain_voting")
    answer = _check(
        gateway_url, "voting", ["voter1", "voter2", "voter3", "voter4", "aggregate"],
        lambda: example.run(gateway_url + "/v1"),
    )
    assert isinstance(answer, str)


def test_dspy_example(gateway_url: str) -> None:
    example = _load("dspy_refine")
    answer = _check(
        gateway_url, "refine", ["generate", "critique", "refine"],
        lambda: example.run(gateway_url + "/v1"),
    )
    assert isinstance(answer, str)
