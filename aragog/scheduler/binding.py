"""The baselines' configuration choice, made once per request instead of once per stage.

Binding is expressed as narrowing C(r) to a single configuration, so the baselines ride
the same meta-queue, capacity accounting and round as Aragog: each stage then has one
allowed model and waits until that model has a free slot.
"""

from __future__ import annotations

from collections.abc import Mapping

from aragog.fleet.snapshot import FleetSnapshot
from aragog.scheduler.capacity import EngineProfile
from aragog.scheduler.tables import Mask, WorkflowTable

# A model with no healthy replica counts as saturated; saturation is the worst it gets.
_UNREACHABLE = 1.0
_FLOOR = 0.01


def bind(table: WorkflowTable, mask: Mask, weight: Mapping[str, float]) -> Mask:
    """C(r) reduced to its configuration of least summed weight."""
    return 1 << table.index[table.cheapest(mask, weight)]


def per_input(table: WorkflowTable, mask: Mask, cost: Mapping[str, float]) -> Mask:
    """The cheapest viable configuration: what a per-input router alone would pick."""
    return bind(table, mask, cost)


def per_input_load(
    table: WorkflowTable,
    mask: Mask,
    cost: Mapping[str, float],
    pressure: Mapping[str, float],
) -> Mask:
    """The viable configuration cheapest once each model's cost is inflated by its current
    load (``pressure`` = load / saturation over its replicas) the way queueing delay grows,
    1 / (1 - load): 2x at half load, 100x at saturation and beyond. Load is read once, at
    arrival; that is this baseline's weakness against per-stage scheduling."""
    weight = {m: c / max(_FLOOR, 1.0 - pressure.get(m, _UNREACHABLE)) for m, c in cost.items()}
    return bind(table, mask, weight)


def per_workflow(
    table: WorkflowTable, configuration: Mapping[str, str] | None, cost: Mapping[str, float]
) -> Mask:
    """One static configuration for every request; all-largest unless configured."""
    if configuration is None:
        return 1 << table.index[table.spec.largest(cost)]
    return 1 << table.index[tuple(configuration[s] for s in table.spec.stage_names)]


def check_static(table: WorkflowTable, configuration: Mapping[str, str], where: str) -> list[str]:
    """Problems with a per-workflow configuration, path-bearing like the config's own."""
    problems = []
    names = table.spec.stage_names
    for stage in names:
        model = configuration.get(stage)
        if model is None:
            problems.append(f"{where}.configuration: no model for stage {stage!r}")
        elif model not in table.stage_models[table.stage_index[stage]]:
            problems.append(f"{where}.configuration[{stage}]: {model!r} is not a candidate")
    problems += [
        f"{where}.configuration: unknown stage {s!r}" for s in configuration if s not in names
    ]
    return problems


def model_pressure(
    snapshot: FleetSnapshot,
    others: Mapping[str, float],
    ours: Mapping[str, int],
    profiles: Mapping[str, EngineProfile],
) -> dict[str, float]:
    load: dict[str, float] = {}
    sat: dict[str, float] = {}
    for eid, st in snapshot.engines.items():
        if st.healthy:
            m = st.ref.model
            load[m] = load.get(m, 0.0) + others.get(eid, 0.0) + ours.get(eid, 0)
            sat[m] = sat.get(m, 0.0) + profiles[eid].saturation
    return {m: load[m] / sat[m] for m in load}
