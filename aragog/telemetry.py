"""The gateway's own Prometheus metrics (``aragog_*``), in a registry owned by one app."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.1)
_QUEUE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "aragog_requests",
            "Calls answered, by workflow/stage ('' for plain calls), model and HTTP status",
            ["workflow", "stage", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "aragog_request_latency_seconds",
            "End-to-end latency of a call through the gateway",
            ["workflow", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "aragog_time_to_first_token_seconds",
            "Time to the first streamed event",
            ["workflow", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "aragog_tokens", "Tokens reported by engines' usage", ["model", "kind"], registry=r
        )
        self.overhead = Histogram(
            "aragog_gateway_overhead_seconds",
            "Time from a call's arrival to its upstream send, scheduler queueing excluded",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "aragog_schedule_wait_seconds",
            "Time a workflow call waited for its policy",
            ["workflow"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "aragog_engine_inflight",
            "Calls the gateway has in flight per engine",
            ["engine", "model"],
            registry=r,
        )
        self.engine_running = Gauge(
            "aragog_engine_running", "Requests running, as scraped", ["engine", "model"], registry=r
        )
        self.engine_waiting = Gauge(
            "aragog_engine_waiting", "Requests waiting, as scraped", ["engine", "model"], registry=r
        )
        self.engine_kv = Gauge(
            "aragog_engine_kv_usage",
            "KV-cache usage 0-1, as scraped",
            ["engine", "model"],
            registry=r,
        )
        self.engine_healthy = Gauge(
            "aragog_engine_healthy",
            "1 while the engine's last good scrape is fresh",
            ["engine", "model"],
            registry=r,
        )
        self.scrape_errors = Counter(
            "aragog_scrape_errors", "Failed /metrics scrapes", ["engine"], registry=r
        )
        self.snapshot_age = Gauge(
            "aragog_fleet_snapshot_age_seconds",
            "Age of the fleet snapshot at collection",
            registry=r,
        )
        self.request_states = Gauge(
            "aragog_request_states", "Workflow requests held in the state store", registry=r
        )
        self._scheduler_metrics(r)
        self._reliability_metrics(r)

    def _reliability_metrics(self, r: CollectorRegistry) -> None:
        self.breaker_state = Gauge(
            "aragog_engine_breaker_state",
            "Circuit breaker per engine: 0 closed, 1 open, 2 half-open",
            ["engine"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "aragog_engine_breaker_transitions",
            "Breaker phase changes, by the phase entered",
            ["engine", "phase"],
            registry=r,
        )
        self.upstream_failures = Counter(
            "aragog_upstream_failures",
            "Failed tries on an engine: refused, timeout, broken, overloaded, aborted, mid_stream",
            ["engine", "kind"],
            registry=r,
        )
        self.retries = Counter(
            "aragog_upstream_retries",
            "Calls tried again elsewhere before their first byte, by the failure that caused it",
            ["reason"],
            registry=r,
        )
        self.state_conflicts = Counter(
            "aragog_state_conflicts",
            "Placements redone because another replica fixed the stage first",
            ["workflow"],
            registry=r,
        )
        self.auth_rejected = Counter(
            "aragog_auth_rejected",
            "Requests refused at the door: missing or invalid key (401), rate limited (429)",
            ["reason"],
            registry=r,
        )

    def _scheduler_metrics(self, r: CollectorRegistry) -> None:
        self.sched_queue = Gauge(
            "aragog_scheduler_queue_length", "Workflow calls held in the meta-queue", registry=r
        )
        self.sched_round_queue = Histogram(
            "aragog_scheduler_round_queue_calls",
            "Calls queued when a round ran",
            buckets=_QUEUE_BUCKETS,
            registry=r,
        )
        self.sched_wait = Histogram(
            "aragog_scheduler_wait_seconds",
            "Time a call spent in the meta-queue, on the scheduler's clock",
            ["workflow", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sched_round = Histogram(
            "aragog_scheduler_round_seconds",
            "Time to plan one scheduling round",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.sched_assigned = Counter(
            "aragog_scheduler_assignments",
            "Calls the scheduler dispatched, by the model it chose",
            ["workflow", "stage", "model"],
            registry=r,
        )
        self.sched_skipped = Counter(
            "aragog_scheduler_skipped",
            "Calls a round left queued because no allowed model had a free slot",
            ["workflow"],
            registry=r,
        )
        self.sched_rejected = Counter(
            "aragog_scheduler_rejected",
            "Calls refused by the scheduler (queue_full: 429, no_engine: 503)",
            ["workflow", "reason"],
            registry=r,
        )

        self.router_latency = Histogram(
            "aragog_router_latency_seconds",
            "Time to compute C(r), once per request",
            ["workflow"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.router_share = Histogram(
            "aragog_router_viable_share",
            "|C(r)| / number of configurations",
            ["workflow"],
            buckets=(0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
            registry=r,
        )
        self.router_fallbacks = Counter(
            "aragog_router_fallbacks",
            "Requests given the per-workflow fallback set",
            ["workflow", "reason"],
            registry=r,
        )

    def bind_gauges(self, snapshot_age: Callable[[], float], states: Callable[[], int]) -> None:
        """Gauges computed when scraped rather than kept up to date on the hot path."""
        self.snapshot_age.set_function(snapshot_age)
        self.request_states.set_function(lambda: float(states()))

    def observe_fleet(
        self, engines: Mapping[str, tuple[str, bool, float, float, float]], failed: list[str]
    ) -> None:
        """Engine gauges from a snapshot: id -> (model, healthy, running, waiting, kv)."""
        for eid, (model, healthy, running, waiting, kv) in engines.items():
            self.engine_healthy.labels(eid, model).set(1.0 if healthy else 0.0)
            self.engine_running.labels(eid, model).set(running)
            self.engine_waiting.labels(eid, model).set(waiting)
            self.engine_kv.labels(eid, model).set(kv)
        for eid in failed:
            self.scrape_errors.labels(eid).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
