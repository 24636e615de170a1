"""Thousands of malformed requests through the app (fake engines behind it): every one
gets a 2xx/4xx answer in OpenAI's error shape, none a 5xx, and the gateway keeps serving.

Hypothesis generates the cases; they are then sent in one event loop (hypothesis does not
drive async tests), so a failure names the case rather than a shrunk example. Scale with
ARAGOG_FUZZ_EXAMPLES (default 3000)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aragog.workflow.spec import WorkflowSpec
from tests.reliability.faults import CONFIG, Env

pytestmark = pytest.mark.timeout(600)
EXAMPLES = int(os.environ.get("ARAGOG_FUZZ_EXAMPLES", "3000"))
WORKFLOW = WorkflowSpec.model_validate({
    "name": "wf",
    "stages": [{"name": "gen", "models": ["small", "large"]}, {"name": "judge",
                                                               "models": ["small"]}],
    "edges": [["gen", "judge"]],
})

_text = st.text(max_size=30)
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | _text
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(_text, c,
                     max_size=4), max_leaves=12)
_fields = ["model", "messages", "prompt", "input", "stream", "stream_options", "metadata",
           "max_tokens", "max_completion_tokens", "n", "temperature", "tools", "user"]
_realistic = {
    "model": st.sampled_from(["small", "large", "", "nope", "s"]) | _json,
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "x"]),
                                                "content": _text | _json}), max_size=3) | _json,
    "stream": st.booleans() | _json,
    "metadata": st.dictionaries(st.sampled_from(["aragog_workflow", "aragog_stage",
                                                 "aragog_request_id", "k"]),
                                st.sampled_from(["wf", "gen", "judge", "", "r1"]) | _json,
                                max_size=4) | _json,
}
_skeleton = st.dictionaries(
    st.sampled_from(_fields), st.one_of(*[_realistic.get(f, _json) for f in _fields]),
    max_size=8,
).flatmap(lambda d: st.fixed_dictionaries({k: _realistic.get(k, _json) for k in d}))
_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
_headers = st.dictionaries(
    st.sampled_from(["x-aragog-workflow", "x-aragog-stage", "x-aragog-request-id",
                     "content-type", "content-length-ish", "x-aragog-configuration"]),
    st.sampled_from(["wf", "gen", "judge", "", " "]) | _header_text, max_size=4)


def _encode(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # integers beyond 64 bits
        return repr(body).encode()


_body = st.one_of(
    _skeleton.map(_encode),
    _json.map(_encode),
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),  # nesting bombs
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)
_case = st.tuples(
    st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE"]),
    st.sampled_from(["/v1/chat/completions"] * 4 + ["/v1/completions", "/v1/embeddings",
                    "/v1/models", "/v1/nope", "/metrics", "/v1/workflows/wf/runs"]),
    _headers,
    _body,
)


def _collect() -> list[tuple[str, str, dict[str, str], bytes]]:
    cases: list[tuple[str, str, dict[str, str], bytes]] = []

    @settings(max_examples=EXAMPLES, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_case)
    def gather(case: tuple[str, str, dict[str, str], bytes]) -> None:
        cases.append(case)

    gather()
    return cases


async def test_malformed_requests_never_5xx() -> None:
    cases = _collect()
    env = Env({**CONFIG, "limits": {"max_body_bytes": 8192, "max_tokens": 256}},
              workflows={"wf": WORKFLOW})
    await env.gw.poller.poll_once()
    statuses: Counter[int] = Counter()
    bad: list[tuple[int, Any]] = []
    for method, path, headers, body in cases:
        resp = await env.client.request(method, path, content=body, headers=headers)
        statuses[resp.status_code] += 1
        if resp.status_code >= 500:
            bad.append((resp.status_code, (method, path, headers, body[:200], resp.text[:300])))
        elif resp.status_code >= 400 and resp.status_code != 499:
            assert resp.json()["error"]["message"], resp.text
    print(f"\nfuzz: {len(cases)} requests, statuses {dict(sorted(statuses.items()))}")
    assert not bad, bad[:5]
    assert (await env.chat(model="small")).status_code == 200  # still serving
    assert env.inflight_total() == 0
    assert len(env.gw.store) <= env.gw.cfg.state.max_requests
