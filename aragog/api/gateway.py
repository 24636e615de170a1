"""Everything one gateway instance owns, built in one place and passed in (no singletons)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping

import anyio
import httpx

from aragog.config import ConfigError, GatewayConfig, RouterConfig, WorkflowPolicyConfig
from aragog.fleet.health import Breakers, Outcome, Phase
from aragog.fleet.load import InFlight
from aragog.fleet.metrics import EngineMetrics
from aragog.fleet.poller import FleetPoller
from aragog.fleet.snapshot import FleetSnapshot, ScrapeFailure, ScrapeResult, engine_refs
from aragog.proxy import HttpxUpstream, Upstream
from aragog.router.artifact import ArtifactError
from aragog.router.embedders import Embedder, OpenAIEmbedder, make_embedder
from aragog.router.once import OncePerRequest
from aragog.router.service import Router, RouteResult
from aragog.scheduler.base import Policy
from aragog.scheduler.binding import check_static
from aragog.scheduler.capacity import profiles_for
from aragog.scheduler.jit import JitScheduler
from aragog.scheduler.largest import LargestPolicy
from aragog.scheduler.policies import QueuedPolicy
from aragog.scheduler.tables import WorkflowTable
from aragog.state import MemoryStore, RequestState, RequestStore
from aragog.telemetry import Metrics
from aragog.workflow.spec import Configuration, WorkflowSpec


def _make_store(cfg: GatewayConfig, clock: Callable[[], float]) -> RequestStore:
    if cfg.store.backend == "memory":
        return MemoryStore(cfg.state.ttl_s, cfg.state.max_requests, clock)
    from aragog.state_redis import RedisStore  # only replicated gateways need redis

    assert cfg.store.redis_url is not None, "checked with the configuration"
    return RedisStore(
        cfg.store.redis_url.get_secret_value(),
        cfg.state.ttl_s,
        cfg.state.max_requests,
        cfg.store.key_prefix,
    )


class Gateway:
    def __init__(
        self,
        cfg: GatewayConfig,
        workflows: Mapping[str, WorkflowSpec],
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
        store: RequestStore | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.cfg = cfg
        self.workflows = dict(workflows)
        self.client = client
        self.clock = clock
        self.refs = engine_refs(cfg)
        self.cost = {m.name: m.cost for m in cfg.fleet.models}
        self.metrics = Metrics()
        self.inflight = InFlight()
        self.store: RequestStore = store or _make_store(cfg, clock)
        # With a shared store, siblings placed on other replicas are invisible to this
        # scheduler's in-memory view, so the store must arbitrate prefix consistency.
        self.shared_store = not isinstance(self.store, MemoryStore)
        self.upstream: Upstream = upstream or HttpxUpstream(client, cfg.upstream)
        self.breakers = Breakers(
            [r.engine_id for r in self.refs], cfg.breaker, clock, self._breaker_changed
        )
        # Tries waiting on an engine, cancelled when its breaker opens (then retried).
        self.aborts: dict[str, set[anyio.CancelScope]] = {}
        self.poller = FleetPoller(self.refs, client, cfg.poller, cfg.metric_names, clock)
        self.poller.subscribe(self._observe_health)  # first: the others read the view
        self.poller.subscribe(self._observe_fleet)
        # One meta-queue for all queued workflows: they share the engines' slots.
        self.scheduler = JitScheduler(
            self.fleet,
            profiles_for(cfg),
            cfg.scheduler,
            self.inflight,
            self.metrics,
            clock,
        )
        self.poller.subscribe(self.scheduler.on_snapshot)
        self.poller.on_poll_start(self.scheduler.begin_window)
        self.tables = {name: WorkflowTable(spec) for name, spec in self.workflows.items()}
        self.policies: dict[str, Policy] = {
            name: self._policy(spec, cfg.workflows.get(name, WorkflowPolicyConfig()))
            for name, spec in self.workflows.items()
        }
        self.routers = {
            name: self._router(spec, pc.router)
            for name, spec in self.workflows.items()
            if (pc := cfg.workflows.get(name)) is not None and pc.router is not None
        }
        self.routing = OncePerRequest(cfg.state.max_requests)
        self.metrics.bind_gauges(
            lambda: self.clock() - self.poller.snapshot.taken_at, lambda: len(self.store)
        )

    def _router(self, spec: WorkflowSpec, rc: RouterConfig) -> Router:
        where = f"workflows[{spec.name}].router"
        try:
            return Router.load(rc.artifact, spec, self._embedder(rc.embedder), rc.budget_s)
        except (ArtifactError, ValueError, OSError) as err:
            raise ConfigError("<config>", [f"{where}: {err}"]) from None

    def _embedder(self, name: str) -> Embedder:
        """Local embedders by name, or ``openai:MODEL:DIM``: a fleet model serving
        /v1/embeddings (the production path), reached through the gateway's own client."""
        kind, _, rest = name.partition(":")
        if kind != "openai":
            return make_embedder(name)
        model, _, dim = rest.rpartition(":")
        ref = next((r for r in self.refs if r.model == model), None)
        if ref is None or not dim.isdigit():
            raise ValueError(f"embedder {name!r}: expected openai:FLEET_MODEL:DIM")
        return OpenAIEmbedder(self.client, ref.url, ref.served_model_name, int(dim))

    async def viable_set(
        self, spec: WorkflowSpec, request_id: str, text: str
    ) -> frozenset[Configuration] | None:
        """C(r) for a request, routed once however many of its calls arrive together; None
        when the workflow has no router (every configuration is viable)."""
        router = self.routers.get(spec.name)
        if router is None:
            return None
        task = self.routing.start(
            router, request_id, text, lambda res: self._observe_route(spec, res)
        )
        # Shielded: a call whose client leaves must not cancel its siblings' routing.
        result = await asyncio.shield(task)
        self.routing.forget(spec.name, request_id)
        return result.viable

    def _observe_route(self, spec: WorkflowSpec, res: RouteResult) -> None:
        m, wf = self.metrics, spec.name
        m.router_latency.labels(wf).observe(res.latency_s)
        m.router_share.labels(wf).observe(
            len(res.viable) / math.prod(len(s.models) for s in spec.stages)
        )
        if res.fallback:  # "timeout" or "error: <details>"; keep the label set bounded
            m.router_fallbacks.labels(wf, (res.reason or "error").split(":", 1)[0]).inc()

    def _policy(self, spec: WorkflowSpec, pc: WorkflowPolicyConfig) -> Policy:
        if pc.policy == "largest":
            return LargestPolicy(self.fleet, self.inflight, self.cost)
        table = self.tables[spec.name]
        if pc.configuration is not None:
            where = f"workflows[{spec.name}]"
            if problems := check_static(table, pc.configuration, where):
                raise ConfigError("<config>", problems)
        return QueuedPolicy(self.scheduler, table, pc, self.cost, self.store)

    async def aclose(self) -> None:
        """Release what the gateway opened itself (engine connections, a shared store's)."""
        await self.upstream.aclose()
        close = getattr(self.store, "aclose", None)
        if close is not None:
            await close()

    def fleet(self) -> FleetSnapshot:
        """The fleet as placement should see it: the latest snapshot, less engines whose
        breaker is open."""
        return self.breakers.view(self.poller.snapshot)

    def _observe_health(self, snap: FleetSnapshot, results: Mapping[str, ScrapeResult]) -> None:
        for eid, res in results.items():
            if not isinstance(res, ScrapeFailure):
                self.breakers.record(eid, Outcome.SUCCESS)
            elif res.error == "ConnectError" or not snap.engines[eid].healthy:
                # Nobody listening, or silent past the staleness cutoff: down or hung.
                self.breakers.record(eid, Outcome.REFUSED)
            # Else a slow scrape of an engine heard from recently: a saturated engine answers
            # /metrics late (its API server shares the CPU), which is load, not failure;
            # taking it out would abort the very calls that keep it busy.
        self.breakers.advance()

    def _breaker_changed(self, engine_id: str, phase: Phase) -> None:
        self.metrics.breaker_state.labels(engine_id).set(int(phase))
        self.metrics.breaker_transitions.labels(engine_id, phase.name.lower()).inc()
        if phase is Phase.OPEN:
            for scope in self.aborts.get(engine_id, ()):
                scope.cancel()

    def conflicts(
        self, spec: WorkflowSpec, state: RequestState, stage: str, model: str, retry: bool
    ) -> bool:
        """Whether choosing ``model`` for ``stage`` contradicts what the stored state already
        fixed (by this or another replica). A retry may replace its own earlier choice of
        the stage as long as no call of the stage has completed."""
        prev = state.chosen.get(stage)
        if prev is not None and prev != model and not (retry and stage not in state.done):
            return True
        if not self.shared_store or state.viable is None:
            return False
        if self.policies[spec.name].name == "largest":  # it ignores C(r) by design
            return False
        # Choices made elsewhere at other stages must still leave a viable configuration.
        table = self.tables[spec.name]
        viable = table.mask_of(state.viable)
        before = viable & table.consistent(state.chosen)
        return bool(before) and not viable & table.consistent({**state.chosen, stage: model})

    def _observe_fleet(self, _: FleetSnapshot, results: Mapping[str, ScrapeResult]) -> None:
        snap = self.fleet()
        gauges = {}
        for eid, st in snap.engines.items():
            m = st.metrics or EngineMetrics(0.0, 0.0, 0.0)
            gauges[eid] = (st.ref.model, st.healthy, m.running, m.waiting, m.kv_usage)
        failed = [eid for eid, r in results.items() if isinstance(r, ScrapeFailure)]
        self.metrics.observe_fleet(gauges, failed)

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when some engine is healthy and every workflow stage has a healthy engine
        for at least one of its candidates; otherwise the reasons."""
        snap = self.fleet()
        healthy_models = {e.ref.model for e in snap.engines.values() if e.healthy}
        problems = []
        if not healthy_models:
            problems.append("no healthy engine")
        for spec in self.workflows.values():
            for stage in spec.stages:
                if not healthy_models.intersection(stage.models):
                    problems.append(
                        f"workflow {spec.name!r} stage {stage.name!r}: no healthy "
                        f"engine for {', '.join(stage.models)}"
                    )
        return not problems, problems
