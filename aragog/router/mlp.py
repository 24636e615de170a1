"""A one-hidden-layer MLP with a softmax head, in numpy: trained offline, served in-process.

The classes it predicts are the workflow's distinct per-input correctness vectors over its
configurations; composing its class probabilities with the class-by-configuration score
matrix gives one score per configuration from one embedding (``decision.config_scores``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from aragog.router.progress import Progress

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class MLP:
    w1: F32
    b1: F32
    w2: F32
    b2: F32

    def proba(self, x: F32) -> F32:
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        z = h @ self.w2 + self.b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p: F32 = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return p


@dataclass(frozen=True)
class TrainParams:
    hidden: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch: int = 128
    max_epochs: int = 60
    patience: int = 6
    seed: int = 0


def _init(d: int, h: int, k: int, rng: np.random.Generator, prior: F32) -> MLP:
    w1 = (rng.standard_normal((d, h)) * np.sqrt(2.0 / d)).astype(np.float32)
    w2 = (rng.standard_normal((h, k)) * np.sqrt(1.0 / h)).astype(np.float32)
    # Start at the class prior, so early stopping can never do worse than "predict the base rate".
    b2 = np.log(np.maximum(prior, 1e-6)).astype(np.float32)
    return MLP(w1, np.zeros(h, np.float32), w2 * 0.1, b2)


def nll(model: MLP, x: F32, y: I64) -> float:
    p = model.proba(x)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-9))))


def train_mlp(
    x: F32,
    y: I64,
    val: tuple[F32, I64] | None,
    n_classes: int,
    params: TrainParams,
    progress: bool = False,
) -> tuple[MLP, int]:
    """Adam on cross-entropy with weight decay. With ``val``: keeps the epoch with the best
    validation loss (early stopping); without: runs ``max_epochs``. Returns (model, epochs)."""
    rng = np.random.default_rng(params.seed)
    prior = np.bincount(y, minlength=n_classes).astype(np.float32) + 1.0
    model = _init(x.shape[1], params.hidden, n_classes, rng, prior / prior.sum())
    theta = [model.w1, model.b1, model.w2, model.b2]
    m = [np.zeros_like(t) for t in theta]
    v = [np.zeros_like(t) for t in theta]
    best, best_epoch, stale, step = model, 0, 0, 0
    best_loss = nll(model, *val) if val is not None else 0.0
    bar = Progress("train mlp", params.max_epochs, enabled=progress)
    for epoch in range(1, params.max_epochs + 1):
        for idx in np.array_split(rng.permutation(len(y)), max(len(y) // params.batch, 1)):
            step += 1
            grads = _grads(MLP(*theta), x[idx], y[idx])
            for i, g in enumerate(grads):
                if i in (0, 2):
                    g = g + params.weight_decay * theta[i]
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                mh = m[i] / (1 - 0.9**step)
                vh = v[i] / (1 - 0.999**step)
                theta[i] = (theta[i] - params.lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        if val is None:
            best, best_epoch = MLP(*theta), epoch
            bar.update(1)
            continue
        loss = nll(MLP(*theta), *val)
        bar.update(1, f"val nll {loss:.4f}")
        if loss < best_loss - 1e-5:
            best, best_loss, best_epoch, stale = MLP(*theta), loss, epoch, 0
        else:
            stale += 1
            if stale >= params.patience:
                bar.update(params.max_epochs, "early stop")
                break
    return best, best_epoch


def _grads(model: MLP, x: F32, y: I64) -> list[F32]:
    pre = x @ model.w1 + model.b1
    h = np.maximum(pre, 0.0)
    p = MLP(model.w1, model.b1, model.w2, model.b2).proba(x)
    dz = p.copy()
    dz[np.arange(len(y)), y] -= 1.0
    dz /= len(y)
    gw2 = h.T @ dz
    gb2 = dz.sum(axis=0)
    dh = (dz @ model.w2.T) * (pre > 0)
    gw1 = x.T @ dh
    gb1 = dh.sum(axis=0)
    return [gw1, gb1, gw2, gb2]
