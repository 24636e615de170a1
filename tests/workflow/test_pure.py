"""The executor's pure cores, table-driven: templates, parsing, scorers, combiners, the
forced-configuration header and the spec checks."""

from __future__ import annotations

from typing import Any

import pytest

from aragog.workflow import forced
from aragog.workflow.combine import agreed, plurality
from aragog.workflow.parsing import Answer, ParseKind, parse_output
from aragog.workflow.scorers import ScorerKind, score
from aragog.workflow.spec import WorkflowSpec, check_workflow
from aragog.workflow.template import TemplateError, references, render
from tests.workflow.specs import CASCADE

SCOPE: dict[str, object] = {
    "input": {"q": "why?", "n": 3, "tags": ["a", "b"]},
    "plan": ["step one", "step two"],
    "draft": "hello",
}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{draft}} world", "hello world"),
    ("{{ input.q }}", "why?"),
    ("{{input.n}}", "3"),
    ("{{plan.1}}", "step two"),
    ("{{plan}}", "step one\nstep two"),
    ("{{plan.7}}|", "|"),  # a model listed fewer items: empty, not an error
    ("{{input}}", '{"q": "why?", "n": 3, "tags": ["a", "b"]}'),
    ('{"json": {braces}} stay', '{"json": {braces}} stay'),
])
def test_render(template: str, expected: str) -> None:
    assert render(template, SCOPE, frozenset({"input"})) == expected


def test_render_missing_input_field_names_it() -> None:
    with pytest.raises(TemplateError, match=r"input\.missing: not found"):
        render("{{input.missing}}", SCOPE, frozenset({"input"}))
    assert references("{{a}} {{ b.0 }}") == [("a",), ("b", "0")]


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("text", "  hi \n", "hi"),
    ("choice", "The answer is (C).", "C"),
    ("choice", "I think b", ""),
    ("choice", "Let me see. B", "B"),
    ("choice", "Answer: d", "D"),
    ("number", "3 apples cost $1,200.50 so 12 cost 4,000", "4000"),
    ("number", "about 2.50", "2.5"),
    ("number", "no idea", ""),
    ("lines", "1. first\n - second\n\n(3) third", ["first", "second", "third"]),
    ("sql", "Here:\n```sql\nSELECT a\nFROM t;\n```", "SELECT a FROM t"),
    ("sql", "query: select count(*) from users; done", "select count(*) from users"),
    ("sql", "nothing", ""),
])
def test_parse(kind: ParseKind, text: str, expected: Answer) -> None:
    assert parse_output(kind, text) == expected


def test_parse_regex() -> None:
    assert parse_output("regex", "final: yes!", r"final: (\w+)") == "yes"
    assert parse_output("regex", "none", r"final: (\w+)") == ""


@pytest.mark.parametrize(("kind", "answer", "expected", "ok"), [
    ("choice", "C", "C", True),
    ("choice", "C", "(c)", True),
    ("choice", "", "C", False),
    ("number", "42", 42, True),
    ("number", "42.0000001", "42", True),
    ("number", "41", "42", False),
    ("number", "", "0", False),
    ("exact", "SELECT  a FROM t", "select a from t", True),
    ("exact", "a", "b", False),
    ("contains", "The capital is Paris.", "paris", True),
    ("contains", "anything", " ", False),
    ("exact", ["a", "b"], "a\nb", True),
])
def test_score(kind: ScorerKind, answer: Answer, expected: object, ok: bool) -> None:
    assert score(kind, answer, expected) is ok


@pytest.mark.parametrize(("answers", "expected"), [
    (["7", "7"], "7"), (["7", "8"], None), (["", ""], None), ([], None),
    ([["a"], ["a"]], ["a"]),
])
def test_agreed(answers: list[Answer], expected: Answer | None) -> None:
    assert agreed(answers) == expected


@pytest.mark.parametrize(("votes", "own", "expected"), [
    (["A", "A", "B"], "C", "A"),
    (["A", "B"], "C", "C"),  # tie: the aggregator's own answer
    (["", "", "B"], "C", "B"),  # empty answers abstain
    (["", ""], "C", "C"),
])
def test_plurality(votes: list[Answer], own: Answer, expected: Answer) -> None:
    assert plurality(votes, own) == expected


@pytest.mark.parametrize(("header", "expected"), [
    ("a=small,b=large,judge=small", ("small", "large", "small")),
    (" judge = large , a=small,b=small", ("small", "small", "large")),
])
def test_forced_parse(header: str, expected: tuple[str, ...]) -> None:
    assert forced.parse(header, CASCADE) == expected
    assert forced.parse(forced.encode(dict(zip(CASCADE.stage_names, expected, strict=True))),
                        CASCADE) == expected


@pytest.mark.parametrize(("header", "needle"), [
    ("a=small", "no model for stage 'b'"),
    ("a=small,a=large,b=small,judge=small", "given twice"),
    ("a", "expected stage=model"),
    ("a=small,b=small,judge=small,x=small", "unknown stage 'x'"),
    ("a=tiny,b=small,judge=small", "'tiny' is not a candidate of stage 'a'"),
])
def test_forced_errors(header: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        forced.parse(header, CASCADE)


def _spec(**changes: Any) -> WorkflowSpec:
    base: dict[str, Any] = {
        "name": "w",
        "stages": [{"name": "a", "models": ["m"]}, {"name": "b", "models": ["m"]}],
        "edges": [["a", "b"]],
    }
    for i, stage in changes.pop("stages", {}).items():
        base["stages"][i].update(stage)
    return WorkflowSpec.model_validate({**base, **changes})


@pytest.mark.parametrize(("spec", "needle"), [
    (_spec(stages={0: {"prompt": "{{b}}"}}), "stages[a].prompt: {{b}} is neither the input"),
    (_spec(stages={1: {"system": "{{c.0}}"}}), "stages[b].system: {{c.0}} is neither"),
    (_spec(stages={0: {"vote": ["b"]}}), "stages[a].vote: 'b' is not upstream"),
    (_spec(stages={0: {"unless_agree": ["a"]}}), "stages[a].unless_agree: 'a' is not upstream"),
    (_spec(stages={1: {"parse": "regex"}}), "stages[b].pattern: required"),
    (_spec(stages={1: {"parse": "regex", "pattern": "("}}), "invalid regular expression"),
    (_spec(output="z"), "output: unknown stage 'z'"),
])
def test_spec_execution_checks(spec: WorkflowSpec, needle: str) -> None:
    problems = check_workflow(spec, {"m": 1.0}, "workflows[w]")
    assert any(needle in p for p in problems), problems


def test_valid_executable_spec_and_final_stage() -> None:
    spec = _spec(stages={1: {"prompt": "{{input.x}} {{a}}", "vote": ["a"]}})
    assert check_workflow(spec, {"m": 1.0}, "w") == []
    assert spec.final_stage() == "b" and spec.ancestors("b") == {"a"}
    assert _spec(edges=[]).final_stage() is None
    assert _spec(edges=[], output="a").final_stage() == "a"
