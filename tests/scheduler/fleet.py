"""Small builders of specs, tables and engine views for the scheduler tests."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from aragog.fleet.metrics import EngineMetrics
from aragog.fleet.snapshot import EngineRef, EngineState, FleetSnapshot
from aragog.scheduler.round import EngineSlots
from aragog.scheduler.tables import WorkflowTable
from aragog.workflow.spec import WorkflowSpec


def spec(
    name: str, stages: dict[str, list[str]], edges: Sequence[tuple[str, str]] = ()
) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": name,
            "stages": [{"name": s, "models": m} for s, m in stages.items()],
            "edges": [list(e) for e in edges],
        }
    )


def table(
    name: str, stages: dict[str, list[str]], edges: Sequence[tuple[str, str]] = ()
) -> WorkflowTable:
    return WorkflowTable(spec(name, stages, edges))


def slots(engine_id: str, model: str, free: int, gain: float = 1.0) -> EngineSlots:
    return EngineSlots(engine_id, model, (gain,) * free)


def snapshot(
    engines: dict[str, tuple[str, float, float]], now: float = 0.0, healthy: bool = True
) -> FleetSnapshot:
    """engine id -> (model, running + waiting, kv usage)."""
    states: dict[str, Any] = {}
    for eid, (model, load, kv) in engines.items():
        ref = EngineRef(eid, model, f"http://{eid}", model)
        states[eid] = EngineState(ref, healthy, EngineMetrics(load, 0.0, kv), now, None, 0)
    return FleetSnapshot(now, MappingProxyType(states))
