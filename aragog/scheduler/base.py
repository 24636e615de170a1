"""The interface every workflow policy implements, the baselines and Aragog's scheduler alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aragog.fleet.snapshot import EngineRef
from aragog.state import RequestState
from aragog.workflow.spec import WorkflowSpec


@dataclass(frozen=True, slots=True)
class StageCall:
    """One agent call of a workflow request, as it reaches the gateway."""

    workflow: WorkflowSpec
    stage: str
    request: RequestState


@dataclass(frozen=True, slots=True)
class Dispatch:
    model: str
    engine: EngineRef


class NoCapacity(Exception):
    """No healthy engine can serve the call; the API answers 503."""


class Policy(Protocol):
    name: str

    async def acquire(self, call: StageCall) -> Dispatch:
        """Choose (model, engine) for the call; may wait for capacity."""
        ...

    def release(self, dispatch: Dispatch) -> None:
        """The call finished (any outcome); its capacity is free again."""
        ...
