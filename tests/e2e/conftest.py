"""End-to-end fixtures: real vLLM CPU engines, the gateway under real uvicorn, the openai SDK.

Engines start once per session (~30-60 s together). Without ``.venv-vllm`` the tier is
skipped locally, but in CI (CI=true) a missing engine is a failure, never a silent skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from aragog.localfleet import (
    MODELS_DIR,
    VLLM_PYTHON,
    EngineSpec,
    LocalFleet,
    free_port,
    wait_http,
)

REPO = Path(__file__).resolve().parents[2]
# tiny-s gets only two sequences so that a handful of calls makes it queue.
SMALL_MAX_SEQS = 2
# A generation long enough (seconds, even on a fast machine) that a test can observe and
# then abandon it; the small and medium engines take the model's whole context for it.
LONG_TOKENS = 2000


def _specs() -> list[EngineSpec]:
    specs = [
        EngineSpec("tiny-s", MODELS_DIR / "tiny-s", free_port(), max_num_seqs=SMALL_MAX_SEQS,
                   max_model_len=2048),
        EngineSpec("tiny-m", MODELS_DIR / "tiny-m", free_port(), max_num_seqs=8,
                   max_model_len=2048),
        EngineSpec("tiny-l", MODELS_DIR / "tiny-l", free_port(), max_num_seqs=8),
    ]
    if (MODELS_DIR / "tiny-embed" / "config.json").is_file():
        specs.append(
            EngineSpec("tiny-embed", MODELS_DIR / "tiny-embed", free_port(), kind="embed")
        )
    return specs


@pytest.fixture(scope="session")
def fleet() -> Iterator[LocalFleet]:
    if not VLLM_PYTHON.exists() or not (MODELS_DIR / "tiny-s").is_dir():
        if os.environ.get("CI"):
            pytest.fail("the local vLLM fleet is not set up: run scripts/setup.sh")
        pytest.skip("no .venv-vllm/models: run scripts/setup.sh for the end-to-end tier")
    with LocalFleet(_specs()) as running:
        yield running


def gateway_config(fleet: LocalFleet, **extra: Any) -> dict[str, Any]:
    cfg = fleet.gateway_config({
        # Four engines on two cores: a saturated engine's API server can take seconds to
        # answer /metrics here, past the default scrape timeout and cutoff (0.5 s and 2 s,
        # right for engines with their own GPUs and cores). The fault tests keep them.
        "poller": {"timeout_s": 10.0, "stale_after_s": 30.0},
        # Likewise a connect the default 2 s would call a timeout (a 504) when this machine
        # stalls the gateway, or a gateway sharing a test's event loop, for longer.
        "upstream": {"connect_timeout_s": 30.0},
        "workflows_dir": str(REPO / "workflows" / "local"),
        "workflows": {"refine": {"policy": "largest"}, "voting": {"policy": "largest"}},
        **extra,
    })
    return cfg


class Gateway:
    """``aragog serve`` in its own process, as a user runs it."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = workdir / f"gateway-{self.port}.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.log = (workdir / f"gateway-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aragog", "serve", "--config", str(path),
             "--port", str(self.port), "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_http(self.url + "/ready", self.proc, timeout, Path(self.log.name))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def gateway_url(fleet: LocalFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gw = Gateway(gateway_config(fleet), tmp_path_factory.mktemp("gateway"))
    try:
        gw.wait_ready()
        yield gw.url
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def client(gateway_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=gateway_url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def scrape(url: str) -> dict[str, float]:
    """``name{labels}`` -> value of a Prometheus page (enough for assertions)."""
    out = {}
    for line in httpx.get(url + "/metrics", timeout=60).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def engine_counter(fleet: LocalFleet, model: str, *names: str) -> float:
    """A metric as the engine itself reports it (summed over its label sets)."""
    return sum(v for k, v in scrape(fleet.url(model)).items() if k.startswith(names))
