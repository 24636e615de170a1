"""Everything one gateway instance owns, built in one place and passed in (no singletons)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx

from aragog.config import ConfigError, GatewayConfig, WorkflowPolicyConfig
from aragog.fleet.load import InFlight
from aragog.fleet.metrics import EngineMetrics
from aragog.fleet.poller import FleetPoller
from aragog.fleet.snapshot import FleetSnapshot, ScrapeFailure, ScrapeResult, engine_refs
from aragog.scheduler.base import Policy
from aragog.scheduler.binding import check_static
from aragog.scheduler.capacity import profiles_for
from aragog.scheduler.jit import JitScheduler
from aragog.scheduler.largest import LargestPolicy
from aragog.scheduler.policies import QueuedPolicy
from aragog.scheduler.tables import WorkflowTable
from aragog.state import MemoryStore, RequestStore
from aragog.telemetry import Metrics
from aragog.workflow.spec import WorkflowSpec


class Gateway:
    def __init__(
        self,
        cfg: GatewayConfig,
        workflows: Mapping[str, WorkflowSpec],
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
        store: RequestStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.workflows = dict(workflows)
        self.client = client
        self.clock = clock
        self.refs = engine_refs(cfg)
        self.cost = {m.name: m.cost for m in cfg.fleet.models}
        self.metrics = Metrics()
        self.inflight = InFlight()
        self.store: RequestStore = store or MemoryStore(
            cfg.state.ttl_s, cfg.state.max_requests, clock
        )
        self.poller = FleetPoller(self.refs, client, cfg.poller, cfg.metric_names, clock)
        self.poller.subscribe(self._observe_fleet)
        # One meta-queue for all queued workflows: they share the engines' slots.
        self.scheduler = JitScheduler(
            lambda: self.poller.snapshot,
            profiles_for(cfg),
            cfg.scheduler,
            self.inflight,
            self.metrics,
            clock,
        )
        self.poller.subscribe(self.scheduler.on_snapshot)
        self.policies: dict[str, Policy] = {
            name: self._policy(spec, cfg.workflows.get(name, WorkflowPolicyConfig()))
            for name, spec in self.workflows.items()
        }
        self.metrics.bind_gauges(
            lambda: self.clock() - self.poller.snapshot.taken_at, lambda: len(self.store)
        )

    def _policy(self, spec: WorkflowSpec, pc: WorkflowPolicyConfig) -> Policy:
        if pc.policy == "largest":
            return LargestPolicy(lambda: self.poller.snapshot, self.inflight, self.cost)
        table = WorkflowTable(spec)
        if pc.configuration is not None:
            where = f"workflows[{spec.name}]"
            if problems := check_static(table, pc.configuration, where):
                raise ConfigError("<config>", problems)
        return QueuedPolicy(self.scheduler, table, pc, self.cost, self.store)

    def _observe_fleet(self, snap: FleetSnapshot, results: Mapping[str, ScrapeResult]) -> None:
        gauges = {}
        for eid, st in snap.engines.items():
            m = st.metrics or EngineMetrics(0.0, 0.0, 0.0)
            gauges[eid] = (st.ref.model, st.healthy, m.running, m.waiting, m.kv_usage)
        failed = [eid for eid, r in results.items() if isinstance(r, ScrapeFailure)]
        self.metrics.observe_fleet(gauges, failed)

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when some engine is healthy and every workflow stage has a healthy engine
        for at least one of its candidates; otherwise the reasons."""
        snap = self.poller.snapshot
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
