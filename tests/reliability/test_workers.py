"""``aragog serve`` with several worker processes sharing request state through Redis: real
uvicorn workers, a real redis-server, an in-process fake engine behind real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from aragog.localfleet import free_port, wait_http

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine() -> Iterator[str]:
    port = free_port()
    code = ("import uvicorn; from tests.fake_engine import FakeEngine; "
            f"uvicorn.run(FakeEngine('s').app(), host='127.0.0.1', port={port}, "
            "log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_workers_share_request_state(engine: str, redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "w.yaml").write_text(json.dumps({
        "name": "w", "stages": [{"name": "a", "models": ["s", "l"]},
                                {"name": "b", "models": ["s", "l"]}],
        "edges": [["a", "b"]]}))
    port = free_port()
    cfg = {
        "server": {"workers": 2},
        "fleet": {"models": [{"name": m, "cost": c, "engines": [
            {"url": engine, "served_model_name": "s", "name": f"{m}-engine"}]}
            for m, c in (("s", 1), ("l", 9))]},
        "store": {"backend": "redis", "redis_url": redis_url, "key_prefix": f"w{port}"},
        "workflows_dir": str(tmp_path / "wf"),
        "workflows": {"w": {"policy": "aragog"}},
    }
    (tmp_path / "gw.json").write_text(json.dumps(cfg))
    gw = subprocess.Popen([sys.executable, "-m", "aragog", "serve", "--config",
                           str(tmp_path / "gw.json"), "--port", str(port),
                           "--log-level", "warning"], cwd=REPO)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/ready", gw)
        workers = psutil.Process(gw.pid).children(recursive=True)
        assert len([p for p in workers if "python" in p.name()]) >= 2
        models: dict[str, dict[str, str]] = {}
        for i in range(12):  # fresh connections: the kernel spreads them over the workers
            rid = f"r{i % 4}"
            stage = "a" if i < 4 else "b"
            resp = httpx.post(base + "/v1/chat/completions", timeout=10, headers={
                "X-Aragog-Workflow": "w", "X-Aragog-Request-Id": rid, "X-Aragog-Stage": stage,
                "Connection": "close"},
                json={"messages": [{"role": "user", "content": "x"}]})
            assert resp.status_code == 200, resp.text
            seen = models.setdefault(rid, {})
            # A stage keeps one model whichever worker serves its call.
            assert seen.setdefault(stage, resp.headers["x-aragog-model"]) == \
                resp.headers["x-aragog-model"]
        assert len(models) == 4 and all(len(m) == 2 for m in models.values())
    finally:
        gw.terminate()
        gw.wait(20)
