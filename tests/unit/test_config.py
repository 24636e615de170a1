from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aragog.cli import load_all
from aragog.config import ConfigError, load_config, parse_config
from aragog.workflow.spec import WorkflowSpec, check_workflow, load_workflows


def fleet(**extra: Any) -> dict[str, Any]:
    return {
        "fleet": {"models": [
            {"name": "s", "cost": 1, "engines": [{"url": "http://127.0.0.1:1"}]},
            {"name": "l", "cost": 9, "engines": [{"url": "http://127.0.0.1:2"}]},
        ]},
        **extra,
    }


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "fleet: Field required"),
        (fleet(typo=1), "typo: unknown field"),
        ({"fleet": {"models": [{"name": "s", "cost": 1, "engines": [{"url": "127.0.0.1"}]}]}},
         "fleet.models[0].engines[0].url: must start with http:// or https://"),
        ({"fleet": {"models": [{"name": "s", "cost": 0, "engines": [{"url": "http://h"}]}]}},
         "fleet.models[0].cost: Input should be greater than 0"),
        ({"fleet": {"models": [{"name": "s", "cost": 1, "engines": []}]}},
         "fleet.models[0].engines: List should have at least 1 item"),
        ({"fleet": {"models": [{"name": "s", "cost": 1, "engines": [{"url": "http://h"}]},
                               {"name": "s", "cost": 2, "engines": [{"url": "http://g"}]}]}},
         "fleet.models[1].name: duplicate model 's'"),
        (fleet(poller={"timeout_s": 5, "stale_after_s": 2}),
         "poller.timeout_s: must be below poller.stale_after_s"),
        (fleet(workflows={"w": {"policy": "magic"}}), "workflows.w.policy: Input should be"),
        (fleet(server={"workers": 2}),
         "server.workers: more than one worker needs store.backend: redis"),
        ({"fleet": {"models": [{"name": "s", "cost": 1, "engines": [
            {"url": "http://h", "api_key": "${ARAGOG_TEST_UNSET_VAR}"}]}]}},
         "fleet.models[0].engines[0].api_key: environment variable ARAGOG_TEST_UNSET_VAR is not "
         "set"),
    ],
)
def test_errors_name_the_path(data: Any, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(data)), problems(data)


def test_api_key_from_env_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_KEY", "sk-123")
    data = fleet()
    data["fleet"]["models"][0]["engines"][0]["api_key"] = "${ENGINE_KEY}"
    cfg = parse_config(data)
    key = cfg.fleet.models[0].engines[0].api_key
    assert key is not None and key.get_secret_value() == "sk-123"
    assert "sk-123" not in repr(cfg)


def test_workflow_problems_name_stage_and_model() -> None:
    spec = WorkflowSpec.model_validate({
        "name": "w",
        "stages": [{"name": "a", "models": ["s", "x"]}, {"name": "b", "models": ["l"]}],
        "edges": [["a", "c"]],
    })
    got = check_workflow(spec, {"s": 1, "l": 9}, "workflows[w]")
    assert "workflows[w].stages[a].models: unknown model 'x'" in got
    assert "workflows[w].edges[0]: unknown stage 'c'" in got


def test_workflow_cycle_rejected() -> None:
    spec = WorkflowSpec.model_validate({
        "name": "w",
        "stages": [{"name": "a", "models": ["s"]}, {"name": "b", "models": ["s"]}],
        "edges": [["a", "b"], ["b", "a"]],
    })
    assert check_workflow(spec, {"s": 1}, "w") == ["w.edges: the stages do not form a DAG "
                                                   "(cycle found)"]


def test_spec_helpers() -> None:
    spec = WorkflowSpec.model_validate({
        "name": "w",
        "stages": [{"name": "a", "models": ["s", "l"]}, {"name": "b", "models": ["s", "l"]},
                   {"name": "c", "models": ["s"]}],
        "edges": [["a", "c"], ["b", "c"]],
    })
    assert len(list(spec.configurations())) == 4
    assert spec.largest({"s": 1, "l": 9}) == ("l", "l", "s")
    assert spec.depths() == {"a": 1, "b": 1, "c": 0}


def test_load_files_and_relative_workflows_dir(tmp_path: Path) -> None:
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "w.yaml").write_text(
        "name: w\nstages:\n  - {name: a, models: [s, l]}\n"
    )
    (tmp_path / "gw.yaml").write_text(
        "fleet:\n  models:\n    - {name: s, cost: 1, engines: [{url: 'http://h:1'}]}\n"
        "    - {name: l, cost: 2, engines: [{url: 'http://h:2'}]}\n"
        "workflows_dir: wf\nworkflows:\n  w: {policy: largest}\n"
    )
    cfg, workflows = load_all(str(tmp_path / "gw.yaml"))
    assert list(workflows) == ["w"] and cfg.workflows_dir == str(tmp_path / "wf")


def test_bad_yaml_and_bad_spec_files(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text("fleet: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "gw.yaml")
    (tmp_path / "w.yaml").write_text("name: w\nstages: [{name: a, models: [zz]}]\nextra: 1\n")
    with pytest.raises(ConfigError) as info:
        load_workflows(tmp_path, {"s": 1.0})
    assert "w.yaml: extra: unknown field" in info.value.problems


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "configs").glob("*.yaml")):
        load_all(str(path))
