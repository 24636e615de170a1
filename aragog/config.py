"""Gateway configuration: YAML parsed into strict pydantic models.

Every error names the path of the offending value (``fleet.models[1].engines[0].url: ...``)
so an operator can fix a file without reading code. Secrets may be written as ``${VAR}`` and
are read from the environment at load time, never stored in the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ConfigError(ValueError):
    """A configuration problem; ``problems`` holds one ``path: message`` line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}:\n  " + "\n  ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Strict):
    """One vLLM replica serving a model."""

    url: str
    served_model_name: str | None = None
    api_key: SecretStr | None = None
    name: str | None = Field(default=None, description="engine id; default MODEL@host:port")

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

    @field_validator("api_key", mode="before")
    @classmethod
    def _expand_env(cls, v: object) -> object:
        return _expand(v)


def _expand(v: object) -> object:
    if isinstance(v, str) and (m := _ENV_REF.match(v)):
        if m.group(1) not in os.environ:
            raise ValueError(f"environment variable {m.group(1)} is not set")
        return os.environ[m.group(1)]
    return v


class ModelConfig(_Strict):
    """A model of the fleet. ``cost`` orders models: higher means larger and slower."""

    name: str
    cost: float = Field(gt=0, description="relative cost per call, e.g. parameters in billions")
    engines: list[EngineConfig] = Field(min_length=1)


class FleetConfig(_Strict):
    models: list[ModelConfig] = Field(min_length=1)


class MetricNames(_Strict):
    """vLLM metric names, first present wins; kept here so engine upgrades need no code."""

    running: list[str] = ["vllm:num_requests_running"]
    waiting: list[str] = ["vllm:num_requests_waiting"]
    kv_usage: list[str] = ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]
    preemptions: list[str] = ["vllm:num_preemptions_total", "vllm:num_preemptions"]
    prompt_tokens: list[str] = ["vllm:prompt_tokens_total", "vllm:prompt_tokens"]
    generation_tokens: list[str] = ["vllm:generation_tokens_total", "vllm:generation_tokens"]
    prefix_cache_hits: list[str] = ["vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits"]
    prefix_cache_queries: list[str] = [
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_queries",
    ]
    request_success: list[str] = ["vllm:request_success_total", "vllm:request_success"]
    cache_config_info: str = "vllm:cache_config_info"


class PollerConfig(_Strict):
    interval_s: float = Field(default=0.1, gt=0)
    timeout_s: float = Field(default=0.5, gt=0)
    stale_after_s: float = Field(default=2.0, gt=0)


class UpstreamConfig(_Strict):
    """Per-engine timeouts and the retry budget. A call may be retried on another replica
    (or another model its request still allows) only before its first byte reaches the
    client; after that a failure ends the stream with an error event."""

    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(
        default=300.0, gt=0, description="non-streamed calls: until the whole answer"
    )
    first_byte_timeout_s: float = Field(
        default=60.0, gt=0, description="streamed calls: until the first event (prefill)"
    )
    idle_timeout_s: float = Field(
        default=30.0, gt=0, description="streamed calls: longest silence between events"
    )
    total_timeout_s: float = Field(default=600.0, gt=0, description="whole call, all tries")
    max_attempts: int = Field(default=3, ge=1, le=10, description="tries per call, first included")
    max_connections_per_engine: int = Field(default=256, ge=1)


class BreakerConfig(_Strict):
    """Circuit breaker per engine, fed by scrapes and call outcomes."""

    failure_threshold: int = Field(
        default=2, ge=1, description="consecutive failures that open it (refusals open at once)"
    )
    cooldown_s: float = Field(
        default=1.0, gt=0, description="open this long before a probe may close it"
    )


class StateConfig(_Strict):
    ttl_s: float = Field(default=600.0, gt=0)
    max_requests: int = Field(default=100_000, ge=1)


class LimitsConfig(_Strict):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_tokens: int | None = Field(
        default=None, ge=1, description="ceiling on max_tokens; also the default when absent"
    )


class ApiKeyConfig(_Strict):
    """A client key. ``key`` is best written ``${ENV_VAR}``; it is never logged."""

    name: str = Field(min_length=1, description="label for metrics and logs")
    key: SecretStr
    rate_per_s: float | None = Field(default=None, gt=0, description="requests/s; None: no cap")
    burst: int | None = Field(default=None, ge=1, description="default: max(1, rate_per_s)")

    @field_validator("key", mode="before")
    @classmethod
    def _expand_env(cls, v: object) -> object:
        return _expand(v)


class AuthConfig(_Strict):
    """Client authentication: with no keys the gateway is open (a private network)."""

    keys: list[ApiKeyConfig] = []
    protect_metrics: bool = Field(default=False, description="require a key for /metrics")
    protect_status: bool = Field(default=False, description="require a key for /ready, /status")


class StoreConfig(_Strict):
    """Where request state lives: in memory (one replica) or Redis (several)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretStr | None = Field(default=None, description="redis://host:port/db")
    key_prefix: str = "aragog"

    @field_validator("redis_url", mode="before")
    @classmethod
    def _expand_env(cls, v: object) -> object:
        return _expand(v)


PolicyName = Literal["aragog", "greedy", "per-input", "per-input-load", "per-workflow", "largest"]


class RouterConfig(_Strict):
    """The one-time router of a workflow: a trained artifact (``aragog router train``)."""

    artifact: str = Field(description="router artifact (.npz), relative to this file")
    embedder: str = Field(
        default="hashing:4096",
        description="hashing[:DIM] | wordllama[:DIM] | openai:FLEET_MODEL:DIM; must match the "
        "artifact",
    )
    budget_s: float = Field(default=0.05, gt=0, description="then the fallback set is used")


class WorkflowPolicyConfig(_Strict):
    """How one workflow's calls get their models (``aragog`` is the just-in-time scheduler;
    the others are the baselines it is measured against)."""

    policy: PolicyName = "largest"
    beam_width: int = Field(default=4, ge=1, le=64, description="aragog only")
    configuration: dict[str, str] | None = Field(
        default=None, description="per-workflow only: stage -> model; default all-largest"
    )
    router: RouterConfig | None = Field(
        default=None, description="predict C(r) per request; without it C(r) = everything"
    )


class CapacityConfig(_Strict):
    """Capacity of a model's replicas (or of one engine, keyed by engine id)."""

    saturation: int | None = Field(
        default=None, ge=1, description="batch size where throughput stops growing"
    )
    curve: list[tuple[float, float]] | None = Field(
        default=None, description="(concurrent calls, calls/s) points of the throughput-load curve"
    )
    curve_file: str | None = Field(default=None, description="output of `aragog calibrate`")


class SchedulerConfig(_Strict):
    max_queue: int = Field(default=4096, ge=1, description="calls held at once; then 429")
    retry_after_s: float = Field(default=1.0, gt=0)
    kv_high_watermark: float = Field(default=0.95, gt=0, le=1)
    load_smoothing: float = Field(
        default=0.5, gt=0, le=1, description="weight of the newest scrape in other clients' load"
    )
    default_saturation: int = Field(default=16, ge=1)
    lookahead: bool = Field(
        default=True,
        description="credit a choice with what the request's later stages can still gain",
    )
    capacity: dict[str, CapacityConfig] = Field(
        default={}, description="keyed by model name or engine id (the engine wins)"
    )


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(
        default=1, ge=1, le=64, description="gateway processes; more than one needs a shared store"
    )


class GatewayConfig(_Strict):
    server: ServerConfig = ServerConfig()
    fleet: FleetConfig
    poller: PollerConfig = PollerConfig()
    metric_names: MetricNames = MetricNames()
    upstream: UpstreamConfig = UpstreamConfig()
    breaker: BreakerConfig = BreakerConfig()
    state: StateConfig = StateConfig()
    store: StoreConfig = StoreConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    workflows_dir: str | None = Field(
        default=None, description="folder of workflow YAML specs, relative to this file"
    )
    workflows: dict[str, WorkflowPolicyConfig] = {}
    scheduler: SchedulerConfig = SchedulerConfig()
    profiling: bool = Field(
        default=False,
        description="accept X-Aragog-Configuration (forced models, for `aragog profile`); "
        "never on a production gateway: it bypasses the router and scheduler's choice",
    )


def format_validation_error(err: ValidationError) -> list[str]:
    """Turn pydantic's error list into ``a.b[2].c: message`` lines."""
    lines = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{path or '<root>'}: {msg}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> GatewayConfig:
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, format_validation_error(err)) from None
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def _cross_check(cfg: GatewayConfig) -> list[str]:
    problems: list[str] = []
    seen_models: set[str] = set()
    seen_engines: set[str] = set()
    for i, m in enumerate(cfg.fleet.models):
        if m.name in seen_models:
            problems.append(f"fleet.models[{i}].name: duplicate model {m.name!r}")
        seen_models.add(m.name)
        for j, e in enumerate(m.engines):
            eid = engine_id(m.name, e)
            if eid in seen_engines:
                problems.append(f"fleet.models[{i}].engines[{j}]: duplicate engine {eid!r}")
            seen_engines.add(eid)
    names = [k.name for k in cfg.auth.keys]
    for i, k in enumerate(cfg.auth.keys):
        if names.count(k.name) > 1:
            problems.append(f"auth.keys[{i}].name: duplicate key name {k.name!r}")
    if (cfg.auth.protect_metrics or cfg.auth.protect_status) and not cfg.auth.keys:
        problems.append("auth: protect_metrics/protect_status need at least one key in auth.keys")
    if cfg.store.backend == "redis" and cfg.store.redis_url is None:
        problems.append("store.redis_url: required for the redis backend")
    if cfg.server.workers > 1 and cfg.store.backend == "memory":
        # Calls of one workflow request may land on any worker: their state must be shared.
        problems.append("server.workers: more than one worker needs store.backend: redis")
    if cfg.poller.timeout_s >= cfg.poller.stale_after_s:
        problems.append("poller.timeout_s: must be below poller.stale_after_s")
    for key, cap in cfg.scheduler.capacity.items():
        if key not in seen_models and key not in seen_engines:
            problems.append(f"scheduler.capacity[{key}]: no model or engine named {key!r}")
        if cap.curve is not None and cap.curve_file is not None:
            problems.append(f"scheduler.capacity[{key}]: give curve or curve_file, not both")
    return problems


def engine_id(model: str, engine: EngineConfig) -> str:
    return engine.name or f"{model}@{engine.url.split('://', 1)[1]}"


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as err:
        raise ConfigError(str(p), [f"<file>: cannot read ({err.strerror})"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(str(p), [f"<file>: invalid YAML ({err})"]) from None
    return _relative_to(parse_config(data, str(p)), p.parent)


def _relative_to(cfg: GatewayConfig, base: Path) -> GatewayConfig:
    """Paths in a config file (workflows, calibrations, router artifacts) are relative to it."""

    def under(path: str) -> str:
        return path if Path(path).is_absolute() else str(base / path)

    capacity = {
        k: c.model_copy(update={"curve_file": under(c.curve_file)}) if c.curve_file else c
        for k, c in cfg.scheduler.capacity.items()
    }
    workflows = {
        name: w.model_copy(
            update={"router": w.router.model_copy(update={"artifact": under(w.router.artifact)})}
        )
        if w.router is not None
        else w
        for name, w in cfg.workflows.items()
    }
    return cfg.model_copy(
        update={
            "workflows_dir": under(cfg.workflows_dir) if cfg.workflows_dir else None,
            "scheduler": cfg.scheduler.model_copy(update={"capacity": capacity}),
            "workflows": workflows,
        }
    )
