"""Router artifact: MLP weights plus the metadata that must match at load time.

One ``.npz`` (no pickles): arrays ``w1 b1 w2 b2 scores`` and ``meta`` (a JSON string) with
the workflow fingerprint, configuration order, threshold, embedder id and model costs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aragog.router.mlp import MLP
from aragog.workflow.spec import Configuration, WorkflowSpec

FORMAT = "aragog-router/1"


class ArtifactError(ValueError):
    """The artifact cannot serve this workflow/embedder; the message says what differs."""


def fingerprint(spec: WorkflowSpec) -> str:
    """Stable hash of what routing depends on: name, stages and their candidates, edges."""
    body = json.dumps(
        {
            "name": spec.name,
            "stages": [[s.name, s.models] for s in spec.stages],
            "edges": spec.edges,
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Artifact:
    mlp: MLP
    scores: NDArray[np.float32]  # (C, K) per-class configuration scores (decision.class_scores)
    workflow: str
    fingerprint: str
    configurations: tuple[Configuration, ...]
    threshold: float
    embedder_id: str
    embedder_dim: int
    model_cost: dict[str, float]
    config_cost: tuple[float, ...]  # expected realised FLOPs proxy per configuration
    fallback: tuple[bool, ...]  # per-workflow viable set from training data
    # Configurations closure may add (those meeting the target on training data); None:
    # all, as artifacts written before this field.
    closable: tuple[bool, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        meta = {
            "format": FORMAT,
            "workflow": self.workflow,
            "fingerprint": self.fingerprint,
            "configurations": [list(c) for c in self.configurations],
            "threshold": self.threshold,
            "embedder_id": self.embedder_id,
            "embedder_dim": self.embedder_dim,
            "model_cost": self.model_cost,
            "config_cost": list(self.config_cost),
            "fallback": list(self.fallback),
            "closable": None if self.closable is None else list(self.closable),
            "info": self.info,
        }
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                w1=self.mlp.w1.astype(np.float16),
                b1=self.mlp.b1,
                w2=self.mlp.w2,
                b2=self.mlp.b2,
                scores=self.scores,
                meta=np.array(json.dumps(meta)),
            )


def load_artifact(path: str | Path) -> Artifact:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            mlp = MLP(z["w1"].astype(np.float32), z["b1"], z["w2"], z["b2"])
            scores = z["scores"].astype(np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise ArtifactError(f"{path}: not a router artifact ({err})") from None
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return Artifact(
        mlp=mlp,
        scores=scores,
        workflow=meta["workflow"],
        fingerprint=meta["fingerprint"],
        configurations=tuple(tuple(c) for c in meta["configurations"]),
        threshold=float(meta["threshold"]),
        embedder_id=meta["embedder_id"],
        embedder_dim=int(meta["embedder_dim"]),
        model_cost={k: float(v) for k, v in meta["model_cost"].items()},
        config_cost=tuple(float(x) for x in meta["config_cost"]),
        fallback=tuple(bool(x) for x in meta["fallback"]),
        closable=None if meta.get("closable") is None else tuple(bool(x) for x in meta["closable"]),
        info=meta.get("info", {}),
    )


def check_artifact(
    art: Artifact, spec: WorkflowSpec, embedder_id: str, dim: int, where: str
) -> list[str]:
    """Every mismatch between an artifact and what it is asked to serve."""
    problems = []
    if art.workflow != spec.name:
        problems.append(f"{where}.workflow: trained for {art.workflow!r}, serving {spec.name!r}")
    if art.fingerprint != fingerprint(spec):
        problems.append(
            f"{where}.fingerprint: workflow {spec.name!r} changed since training "
            f"(stages, candidates or edges); retrain with `aragog router train`"
        )
    if art.configurations != tuple(spec.configurations()):
        problems.append(f"{where}.configurations: order differs from the spec's")
    if art.embedder_id != embedder_id or art.embedder_dim != dim:
        problems.append(
            f"{where}.embedder: trained with {art.embedder_id!r} (dim {art.embedder_dim}), "
            f"given {embedder_id!r} (dim {dim})"
        )
    k = len(art.configurations)
    if art.scores.shape[1:] != (k,) or art.mlp.w2.shape[1] != art.scores.shape[0]:
        problems.append(
            f"{where}.scores: shape {art.scores.shape} inconsistent with {k} configurations"
        )
    for name, flags in (("fallback", art.fallback), ("closable", art.closable)):
        if flags is not None and len(flags) != k:
            problems.append(f"{where}.{name}: {len(flags)} flags for {k} configurations")
    if art.mlp.w1.shape[0] != art.embedder_dim:
        problems.append(
            f"{where}.w1: input size {art.mlp.w1.shape[0]} != embedder dim {art.embedder_dim}"
        )
    return problems
