"""Workflow specs over the fake fleet (models small and large)."""

from __future__ import annotations

from aragog.workflow.spec import WorkflowSpec

M = ["small", "large"]

CHAIN = WorkflowSpec.model_validate({
    "name": "chain",
    "stages": [
        {"name": "draft", "models": M, "prompt": "Q: {{input}}"},
        {"name": "final", "models": M, "system": "be brief",
         "prompt": "Q: {{input}}\nDraft: {{draft}}", "parse": "number"},
    ],
    "edges": [["draft", "final"]],
    "scorer": "number",
})

CASCADE = WorkflowSpec.model_validate({
    "name": "cascade",
    "stages": [
        {"name": "a", "models": M, "prompt": "{{input}}", "parse": "number"},
        {"name": "b", "models": M, "prompt": "{{input}}", "parse": "number"},
        {"name": "judge", "models": M, "prompt": "{{input}} {{a}} or {{b}}?",
         "parse": "number", "unless_agree": ["a", "b"]},
    ],
    "edges": [["a", "judge"], ["b", "judge"]],
    "scorer": "number",
})

FANOUT = WorkflowSpec.model_validate({
    "name": "fanout",
    "stages": [
        {"name": "plan", "models": M, "prompt": "{{input}}", "parse": "lines"},
        *({"name": f"solve{i}", "models": M, "prompt": f"step: {{{{plan.{i}}}}}"}
          for i in range(3)),
        {"name": "vote", "models": M, "prompt": "{{solve0}} {{solve1}} {{solve2}}",
         "vote": ["solve0", "solve1", "solve2"]},
    ],
    "edges": [["plan", "solve0"], ["plan", "solve1"], ["plan", "solve2"],
              ["solve0", "vote"], ["solve1", "vote"], ["solve2", "vote"]],
})

SQL = WorkflowSpec.model_validate({
    "name": "sql",
    "stages": [{"name": "gen", "models": M, "prompt": "{{input.schema}} {{input.question}}",
                "parse": "sql"}],
})

TWO_SINKS = WorkflowSpec.model_validate({
    "name": "twosinks",
    "stages": [{"name": "x", "models": M}, {"name": "y", "models": M}],
})

ALL = {s.name: s for s in (CHAIN, CASCADE, FANOUT, SQL, TWO_SINKS)}
