"""Every local workflow end to end through ``aragog serve`` and real vLLM CPU engines, and
the offline pipeline a user brings a workflow through: profile -> router train -> serve.

The models are random, so the checks are structure, traces and metrics, not answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from aragog.client import run
from aragog.localfleet import LocalFleet
from aragog.router.labels import read_labels
from tests.e2e.conftest import REPO, Gateway, gateway_config, scrape

pytestmark = pytest.mark.e2e
MODELS = {"tiny-s", "tiny-m", "tiny-l"}
INPUTS: dict[str, Any] = {
    "refine": "Why is the sky blue?",
    "voting": "Which is a prime? (A) 4 (B) 6 (C) 7 (D) 9",
    "sql": {"question": "How many users are there?", "schema": "users(id, name)"},
    "decompose": "A shop sells 3 apples for 2 dollars. How much do 12 apples cost?",
    "cascade": "What is 17 + 25?",
}


def check_trace(out: dict[str, Any], stages: list[str]) -> None:
    assert [t["stage"] for t in out["stages"]] == stages
    for t in out["stages"]:
        if t["skipped"]:  # only a cascade's judge, when its solvers agreed
            assert t["model"] is None and t["completion_tokens"] == 0
            continue
        assert t["model"] in MODELS and t["engine"].startswith(t["model"] + "@")
        assert t["latency_s"] > 0 and 0 <= t["queue_wait_s"] <= t["latency_s"]
        assert t["prompt_tokens"] > 0 and t["completion_tokens"] > 0
    assert out["latency_s"] >= max(t["started_s"] + t["latency_s"] for t in out["stages"])


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_each_workflow_runs_end_to_end(gateway_url: str, name: str) -> None:
    spec = yaml_spec(name)
    out = run(gateway_url, name, INPUTS[name])
    check_trace(out, [s["name"] for s in spec["stages"]])
    assert out["workflow"] == name and isinstance(out["answer"], str | list)
    metrics = scrape(gateway_url)
    calls = sum(v for k, v in metrics.items()
                if k.startswith("aragog_requests_total{") and f'workflow="{name}"' in k)
    assert calls >= sum(1 for t in out["stages"] if not t["skipped"])


def test_parallel_stages_overlap(gateway_url: str) -> None:
    out = run(gateway_url, "voting", INPUTS["voting"])
    voters = [t for t in out["stages"] if t["stage"].startswith("voter")]
    first_end = min(t["started_s"] + t["latency_s"] for t in voters)
    assert all(t["started_s"] < first_end for t in voters)  # all four in flight together
    agg = out["stages"][-1]
    assert agg["started_s"] >= max(t["started_s"] + t["latency_s"] for t in voters)


def test_bad_input_is_a_clear_400(gateway_url: str) -> None:
    resp = httpx.post(f"{gateway_url}/v1/workflows/sql/runs", json={"input": "no schema"})
    assert resp.status_code == 400
    assert "reads input.schema" in resp.json()["error"]["message"]


def test_aragog_run_cli(gateway_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aragog", "run", "cascade", "--input", "What is 2 + 2?",
         "--config", str(REPO / "configs" / "local.yaml"), "--url", gateway_url],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "solver_a" in proc.stderr and "total" in proc.stderr


def test_profile_train_serve_round_trip(fleet: LocalFleet, tmp_path: Path) -> None:
    cfg_path = tmp_path / "gateway.yaml"
    cfg_path.write_text(json.dumps(gateway_config(fleet)))
    data = tmp_path / "set.jsonl"
    # "e" is in nearly any text a model writes, the nonsense word in none: both outcomes occur.
    rows = [{"id": f"q{i}", "input": f"Question {i}: say something.",
             "expected": "e" if i % 2 else "zqxjzqxj"} for i in range(8)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    labels_path = tmp_path / "refine.labels.jsonl.gz"
    profile = [sys.executable, "-m", "aragog", "profile", "refine", "--config", str(cfg_path),
               "--data", str(data), "--out", str(labels_path), "--yes", "--quiet"]
    proc = subprocess.run(profile, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "8 inputs x 27 configurations" in proc.stderr
    labels = read_labels(labels_path)
    assert labels.workflow == "refine" and len(labels.rows) == 8
    assert labels.configurations is not None and len(labels.configurations) == 27
    journal = labels_path.with_name(labels_path.name + ".partial.jsonl")
    runs = len(journal.read_text().splitlines()) - 1
    assert 8 <= runs < 8 * 27  # the monotone structure skipped most runs
    # resuming finds nothing left to run
    again = subprocess.run(profile, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0 and "0 inputs" in again.stderr
    assert len(journal.read_text().splitlines()) - 1 == runs

    artifact = tmp_path / "refine.npz"
    train = subprocess.run(
        [sys.executable, "-m", "aragog", "router", "train", "--config", str(cfg_path),
         "--workflow", str(REPO / "workflows" / "local" / "refine.yaml"),
         "--labels", str(labels_path), "--out", str(artifact), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert train.returncode == 0, train.stderr
    served = gateway_config(fleet, workflows={
        "refine": {"policy": "aragog", "router": {"artifact": str(artifact)}},
        "voting": {"policy": "largest"},
    })
    gw = Gateway(served, tmp_path)
    try:
        gw.wait_ready()
        out = run(gw.url, "refine", "Question 99: say something.")
        check_trace(out, ["generate", "critique", "refine"])
        metrics = scrape(gw.url)
        assert metrics['aragog_router_latency_seconds_count{workflow="refine"}'] == 1
    finally:
        gw.stop()


def yaml_spec(name: str) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load((REPO / "workflows" / "local" / f"{name}.yaml")
                                            .read_text())
    return loaded
