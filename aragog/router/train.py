"""Offline training: labels -> embeddings -> MLP over correctness classes -> calibrated threshold
-> artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from aragog.router import decision
from aragog.router.artifact import Artifact, fingerprint
from aragog.router.embedders import Embedder
from aragog.router.labels import LabelSet, Outcomes, Split, outcomes, split_masks
from aragog.router.mlp import TrainParams, train_mlp
from aragog.router.progress import Progress
from aragog.workflow.spec import WorkflowSpec

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
MAX_CHARS = 4000  # the router reads the head of an input; keeps latency bounded


@dataclass(frozen=True)
class TrainOptions:
    seed: int = 0
    max_loss: float = 0.01  # accuracy target: within this of c_max, end to end
    margin: float = 0.005  # calibrate to max_loss - margin (held-out noise)
    folds: int = 5  # cross-fitting over train+val for the calibration set
    params: TrainParams = field(default_factory=TrainParams)
    progress: bool = False


@dataclass(frozen=True)
class Prepared:
    """Labels joined with the spec: outcomes, splits and embeddings, computed once."""

    outcomes: Outcomes
    masks: Mapping[Split, NDArray[np.bool_]]
    x: F32


def clip(text: str) -> str:
    return text[:MAX_CHARS]


async def embed_all(
    embedder: Embedder, texts: Sequence[str], progress: bool, batch: int = 256
) -> F32:
    bar = Progress(f"embed {embedder.id}", len(texts), enabled=progress)
    parts = []
    for i in range(0, len(texts), batch):
        chunk = [clip(t) for t in texts[i : i + batch]]
        parts.append(await embedder.embed(chunk))
        bar.update(len(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)


async def prepare(
    labels: LabelSet,
    spec: WorkflowSpec,
    cost: Mapping[str, float],
    embedder: Embedder,
    seed: int,
    progress: bool,
) -> Prepared:
    out = outcomes(labels, spec, cost)
    masks = split_masks((r.id for r in labels.rows), seed)
    x = await embed_all(embedder, [r.text for r in labels.rows], progress)
    return Prepared(out, masks, x)


def correctness_classes(correct: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Distinct correctness vectors (C, K) and each row's class index."""
    classes, inverse = np.unique(correct, axis=0, return_inverse=True)
    return classes.astype(bool), inverse.reshape(-1).astype(np.int64)


def _folds(n: int, k: int, seed: int) -> NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    result: NDArray[np.int64] = rng.permutation(np.arange(n) % k)
    return result


def cross_fit(x: F32, y: I64, n_classes: int, opts: TrainOptions) -> tuple[F32, int]:
    """Out-of-fold class probabilities for every row (each from a model that never saw it)
    and the median early-stopping epoch, so calibration sees all of train+val, not one
    small validation split."""
    fold = _folds(len(y), opts.folds, opts.seed)
    oof = np.zeros((len(y), n_classes), np.float32)
    epochs = []
    for f in range(opts.folds):
        tr, ho = fold != f, fold == f
        params = replace(opts.params, seed=opts.params.seed + f)
        model, epoch = train_mlp(x[tr], y[tr], (x[ho], y[ho]), n_classes, params, opts.progress)
        oof[ho] = model.proba(x[ho])
        epochs.append(epoch)
    return oof, max(int(np.median(epochs)), 1)


def fit(
    prep: Prepared,
    spec: WorkflowSpec,
    cost: Mapping[str, float],
    embedder: Embedder,
    opts: TrainOptions,
    source: str,
) -> Artifact:
    o = prep.outcomes
    dev = prep.masks["train"] | prep.masks["val"]
    classes, y = correctness_classes(o.correct[dev])
    scores = decision.class_scores(classes, o.largest)
    oof, epochs = cross_fit(prep.x[dev], y, len(classes), opts)
    final = replace(opts.params, max_epochs=epochs)
    mlp, _ = train_mlp(prep.x[dev], y, None, len(classes), final, opts.progress)
    dom = decision.dominance(o.configs, cost)
    config_cost = o.cost[dev].mean(axis=0)
    prob = decision.config_scores(oof, scores)
    val_target = opts.max_loss - opts.margin
    fallback = decision.static_viable_set(o.correct[dev], o.largest, dom, val_target)
    closable = decision.accurate_set(o.correct[dev], o.largest, val_target)
    threshold = decision.calibrate_threshold(
        prob,
        o.correct[dev],
        dom,
        o.largest,
        config_cost,
        val_target,
        fallback,
        closable=closable,
    )
    single = decision.calibrate_single(prob, o.correct[dev], o.largest, config_cost, val_target)
    static = decision.static_choice(o.correct[dev], o.largest, config_cost, opts.max_loss)
    return Artifact(
        mlp=mlp,
        scores=scores,
        workflow=spec.name,
        fingerprint=fingerprint(spec),
        configurations=o.configs,
        threshold=threshold,
        embedder_id=embedder.id,
        embedder_dim=embedder.dim,
        model_cost={m: float(cost[m]) for s in spec.stages for m in s.models},
        config_cost=tuple(float(c) for c in config_cost),
        fallback=tuple(bool(b) for b in fallback),
        closable=tuple(bool(b) for b in closable),
        info={
            "source": source,
            "seed": opts.seed,
            "max_loss": opts.max_loss,
            "val_target": val_target,
            "n_dev": int(dev.sum()),
            "folds": opts.folds,
            "epochs": epochs,
            "classes": len(classes),
            # baselines, calibrated on the same out-of-fold data, for `router eval`
            "single_lambda": single,
            "static_config": static,
        },
    )


async def train_router(
    labels: LabelSet,
    spec: WorkflowSpec,
    cost: Mapping[str, float],
    embedder: Embedder,
    opts: TrainOptions,
) -> tuple[Artifact, Prepared]:
    prep = await prepare(labels, spec, cost, embedder, opts.seed, opts.progress)
    source = labels.source + (" [SYNTHETIC]" if labels.synthetic else "")
    return fit(prep, spec, cost, embedder, opts, source), prep
