"""Client keys (401, constant-time match, never echoed) and per-key rate limits (429)."""

from __future__ import annotations

import pytest

from aragog.api.auth import Bucket, take
from aragog.config import ConfigError, parse_config
from tests.reliability.faults import CONFIG, Env

SECRET = "sk-test-0123456789"


@pytest.mark.parametrize(
    ("bucket", "now", "allowed", "wait"),
    [
        (Bucket(2.0, 0.0), 0.0, True, 0.0),
        (Bucket(0.0, 0.0), 0.0, False, 0.5),  # rate 2/s: half a second to the next token
        (Bucket(0.0, 0.0), 0.5, True, 0.0),
        (Bucket(0.0, 0.0), 100.0, True, 0.0),  # refill is capped at the burst
    ],
)
def test_token_bucket(bucket: Bucket, now: float, allowed: bool, wait: float) -> None:
    new, w = take(bucket, now, rate=2.0, burst=3)
    assert (w == 0.0) is allowed and w == pytest.approx(wait)
    assert new.tokens <= 3


def _env(monkeypatch: pytest.MonkeyPatch, **auth: object) -> Env:
    monkeypatch.setenv("ARAGOG_TEST_KEY", SECRET)
    keys = [{"name": "team-a", "key": "${ARAGOG_TEST_KEY}", "rate_per_s": 1, "burst": 2},
            {"name": "team-b", "key": "other-key-of-another-length"}]
    return Env({**CONFIG, "auth": {"keys": keys, **auth}})


async def test_keys_required_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(monkeypatch)
    await env.gw.poller.poll_once()
    missing = await env.chat(model="large")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    wrong = await env.chat({"Authorization": f"Bearer {SECRET}x"}, model="large")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert SECRET not in wrong.text and "Bearer" not in wrong.json()["error"]["message"]
    ok = await env.chat({"Authorization": f"Bearer {SECRET}"}, model="large")
    assert ok.status_code == 200
    other = await env.chat({"Authorization": "Bearer other-key-of-another-length"}, model="large")
    assert other.status_code == 200
    assert (await env.client.get("/health")).status_code == 200  # probes stay open
    assert (await env.client.get("/metrics")).status_code == 200
    metrics = (await env.client.get("/metrics")).text
    assert 'aragog_auth_rejected_total{reason="invalid"} 1.0' in metrics
    assert SECRET not in metrics


async def test_rate_limit_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(monkeypatch)
    await env.gw.poller.poll_once()
    auth = {"Authorization": f"Bearer {SECRET}"}
    codes = [(await env.chat(auth, model="large")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # burst of 2
    limited = await env.chat(auth, model="large")
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    other = {"Authorization": "Bearer other-key-of-another-length"}
    assert (await env.chat(other, model="large")).status_code == 200  # no limit on team-b
    env.now += 1.0
    assert (await env.chat(auth, model="large")).status_code == 200


async def test_protected_metrics_and_status(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(monkeypatch, protect_metrics=True, protect_status=True)
    assert (await env.client.get("/metrics")).status_code == 401
    assert (await env.client.get("/ready")).status_code == 401
    assert (await env.client.get("/health")).status_code == 200
    got = await env.client.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"})
    assert got.status_code == 200


def test_protection_without_keys_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auth: protect_metrics"):
        parse_config({**CONFIG, "auth": {"protect_metrics": True}})


def test_key_never_in_config_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARAGOG_TEST_KEY", SECRET)
    cfg = parse_config({**CONFIG, "auth": {"keys": [{"name": "a", "key": "${ARAGOG_TEST_KEY}"}]}})
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump())
