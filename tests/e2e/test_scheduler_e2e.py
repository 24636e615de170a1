"""The just-in-time scheduler in front of real vLLM CPU engines of different sizes.

The gateway runs under real uvicorn in this process (so the test can give requests a C(r)
the way the router will, through the request store), driven by the openai SDK. Another
client saturates the small engine directly; calls placed while it is saturated move to the
next model, and every request's models stay inside its C(r).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from openai import AsyncOpenAI

from aragog.api.app import create_app
from aragog.api.gateway import Gateway
from aragog.cli import load_all
from aragog.localfleet import LocalFleet, free_port
from aragog.state import RequestState
from tests.e2e.conftest import LONG_TOKENS, SMALL_MAX_SEQS, engine_counter, gateway_config

pytestmark = pytest.mark.e2e
STAGES = ("generate", "critique", "refine")
ENGINE_LOAD = ("vllm:num_requests_running", "vllm:num_requests_waiting")
MSG = [{"role": "user", "content": "Improve this answer."}]
# C(r) of every test request: anything for generate, never the large model afterwards.
VIABLE = frozenset(
    (g, c, r)
    for g in ("tiny-s", "tiny-m", "tiny-l")
    for c in ("tiny-s", "tiny-m")
    for r in ("tiny-s", "tiny-m")
)


@contextlib.asynccontextmanager
async def serving(fleet: LocalFleet, tmp: Path) -> AsyncIterator[tuple[str, Gateway]]:
    cfg = gateway_config(
        fleet,
        workflows={"refine": {"policy": "aragog"}, "voting": {"policy": "aragog"}},
        scheduler={
            "capacity": {"tiny-s": {"saturation": SMALL_MAX_SEQS}},
            "default_saturation": 8,
        },
        # This gateway shares the test's interpreter with the client threads that saturate
        # tiny-s, so its poller can go seconds without running: not a sign of a hung engine.
        poller={"timeout_s": 1.5, "stale_after_s": 30.0},
    )
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(cfg))
    app = create_app(*load_all(str(path)))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as c:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(url + "/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url, app.state.gateway
    finally:
        server.should_exit = True
        await task


async def run_request(client: AsyncOpenAI, gw: Gateway, rid: str) -> dict[str, str]:
    await gw.store.update("refine", rid, lambda s: RequestState("refine", rid, 0.0, viable=VIABLE))
    models = {}
    for stage in STAGES:
        raw = await client.chat.completions.with_raw_response.create(
            model="any",
            messages=MSG,
            max_tokens=4,
            extra_headers={
                "X-Aragog-Workflow": "refine",
                "X-Aragog-Request-Id": rid,
                "X-Aragog-Stage": stage,
            },
        )
        models[stage] = raw.headers["x-aragog-model"]
    return models


# Another client keeping the small engine's batch full with a queue behind it: long calls,
# each sent again the moment it ends, and again when it fails. CI twice saw the engine idle
# for the whole wait: a ReadError from the engine had ended the hogs (in-loop tasks whose
# errors surfaced only at the end, then this process). In its own process, so this test's
# event loop runs only the gateway, its poller and the test's own calls.
HOGS = """
import asyncio, sys, httpx
async def hog(c, url):
    body = {"model": "tiny-s", "prompt": "x", "max_tokens": int(sys.argv[3]), "ignore_eos": True}
    while True:
        try:
            await c.post(url + "/v1/completions", json=body)
        except httpx.HTTPError as err:  # one dropped connection must not end the load
            print("hog:", repr(err), file=sys.stderr)
            await asyncio.sleep(0.1)
async def main(url, n):
    async with httpx.AsyncClient(timeout=None) as c:
        await asyncio.gather(*(hog(c, url) for _ in range(n)))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@contextlib.asynccontextmanager
async def hogging(fleet: LocalFleet, n: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """The hogs while inside; afterwards the small engine idle again for the next tests."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOGS, fleet.url("tiny-s"), str(n), str(LONG_TOKENS)
    )
    try:
        yield proc
    finally:
        # Its connections close with it, which aborts the generations it left.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        for _ in range(300):
            if await asyncio.to_thread(engine_counter, fleet, "tiny-s", *ENGINE_LOAD) == 0:
                break
            await asyncio.sleep(0.2)


async def test_saturated_small_engine_moves_later_stages(fleet: LocalFleet, tmp_path: Path) -> None:
    async with (
        serving(fleet, tmp_path) as (url, gw),
        # Its connect timeout (5 s by default) runs on this process's loop, which the gateway
        # shares: a starved machine can hold it for longer than that.
        AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300) as client,
    ):
        idle = await run_request(client, gw, "idle")
        assert idle == dict.fromkeys(STAGES, "tiny-s")  # free small engine: best gain

        async with hogging(fleet, 3 * SMALL_MAX_SEQS) as hogs:
            engines = gw.poller.snapshot.engines
            eid = next(e for e, st in engines.items() if st.ref.model == "tiny-s")
            # Until the gateway's fleet view shows it saturated (a generous deadline: this
            # shared machine can stall processes for seconds).
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                small = gw.poller.snapshot.engines[eid]
                if small.scraped_load >= SMALL_MAX_SEQS:
                    break
                await asyncio.sleep(0.05)
            assert small.scraped_load >= SMALL_MAX_SEQS, (small, hogs.returncode)
            busy = await asyncio.gather(*(run_request(client, gw, f"busy{i}") for i in range(4)))

    for models in [idle, *busy]:
        assert tuple(models[s] for s in STAGES) in VIABLE  # inside C(r), always
    later = [m[s] for m in busy for s in ("critique", "refine")]
    assert "tiny-l" not in later
    assert later.count("tiny-m") >= len(later) // 2, busy  # moved off the saturated engine
