"""The serving path: one ``route`` per request, at its first call.

Embedding and decision take well under a millisecond with the local embedders, so they run
inline; a remote embedder is awaited under the time budget. Whatever goes wrong (timeout,
embedder error, bad output) the request still gets a usable set: the per-workflow viable
set from training data, flagged ``fallback``. Metrics are the caller's: it records them
from ``RouteResult``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aragog.router import decision
from aragog.router.artifact import Artifact, ArtifactError, check_artifact, load_artifact
from aragog.router.embedders import Embedder, Vectors
from aragog.router.train import clip
from aragog.workflow.spec import Configuration, WorkflowSpec


@dataclass(frozen=True)
class RouteResult:
    viable: frozenset[Configuration]
    fallback: bool
    reason: str | None  # why the fallback was used: "timeout", "error: ..."
    latency_s: float


class Router:
    def __init__(self, artifact: Artifact, embedder: Embedder, budget_s: float = 0.05) -> None:
        self._art = artifact
        self._embedder = embedder
        self._budget_s = budget_s
        self._configs = artifact.configurations
        self._dom = decision.dominance(artifact.configurations, artifact.model_cost).astype(
            np.float32
        )
        self._largest = artifact.configurations.index(
            tuple(
                max(models, key=lambda m: artifact.model_cost[m])
                for models in _stage_models(artifact)
            )
        )
        self._base = np.array(artifact.fallback, dtype=bool)
        self._base[self._largest] = True
        self._closable = (
            None if artifact.closable is None else np.array(artifact.closable, dtype=bool)
        )
        self._fallback = frozenset(c for c, ok in zip(self._configs, self._base, strict=True) if ok)

    @classmethod
    def load(
        cls,
        artifact_path: str | Path,
        spec: WorkflowSpec,
        embedder: Embedder,
        budget_s: float = 0.05,
    ) -> Router:
        """Raises ``ArtifactError`` naming every mismatch with ``spec`` or ``embedder``."""
        art = load_artifact(artifact_path)
        problems = check_artifact(art, spec, embedder.id, embedder.dim, f"router[{spec.name}]")
        if problems:
            raise ArtifactError(f"{artifact_path}:\n  " + "\n  ".join(problems))
        return cls(art, embedder, budget_s)

    @property
    def workflow(self) -> str:
        return self._art.workflow

    @property
    def fallback_set(self) -> frozenset[Configuration]:
        return self._fallback

    async def route(self, text: str) -> RouteResult:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._budget_s):
                vec = await self._embedder.embed([clip(text)])
            viable = self.decide(vec)
        except TimeoutError:
            return self._fall_back("timeout", start)
        except Exception as err:  # any failure must still leave the request routable
            return self._fall_back(f"error: {type(err).__name__}: {err}", start)
        return RouteResult(viable, False, None, time.perf_counter() - start)

    def decide(self, vec: Vectors) -> frozenset[Configuration]:
        """C(r) for one embedding (1, dim): pure and synchronous."""
        if vec.shape != (1, self._art.embedder_dim) or not np.all(np.isfinite(vec)):
            raise ValueError(f"bad embedding shape {vec.shape} or non-finite values")
        scores = decision.config_scores(
            self._art.mlp.proba(vec.astype(np.float32)), self._art.scores
        )
        closed = decision.decide(
            scores, self._art.threshold, self._dom, self._largest, self._base, self._closable
        )
        return frozenset(self._configs[i] for i in np.flatnonzero(closed[0]))

    def _fall_back(self, reason: str, start: float) -> RouteResult:
        return RouteResult(self._fallback, True, reason, time.perf_counter() - start)


def _stage_models(art: Artifact) -> list[list[str]]:
    """Each stage's candidates, recovered from the configuration list (spec order)."""
    n = len(art.configurations[0])
    return [sorted({c[i] for c in art.configurations}) for i in range(n)]
