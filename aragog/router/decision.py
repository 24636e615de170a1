"""The decision rule, as pure functions of arrays.

Classes are the distinct per-input correctness vectors over the K configurations seen in
training. Per configuration c the score is

    s_c(x) = sum_k P(class k | x) * S[k, c],  S[k, c] = viable_k(c) + gain_k(c)

with viable = correct(c) or not correct(c_max) (the paper's label) and gain = correct(c) and
not correct(c_max): P(viable) plus the chance c fixes an input c_max gets wrong, i.e.
1 + P(correct c) - P(correct c_max), the expected accuracy c keeps against c_max. c is in
C(r) iff s_c >= threshold; then monotone closure (if c is in, so is every c' whose model at
each stage is at least as large), except into configurations the training data shows to
miss the accuracy target (a cascade whose two solvers are the same model never escalates:
larger, yet less accurate); c_max always in.

On skipping decisions: composing through V makes all K decisions one (classes x K) product,
a few microseconds even at K = 243, so evaluating configurations in FLOPs order and skipping
those the closure already covers would cost more in bookkeeping than it saves. The
near-monotone FLOPs-accuracy link is used where it pays instead: the closure fills in the
configurations a noisy per-configuration probability would have dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from aragog.workflow.spec import Configuration

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]


def dominance(configs: Sequence[Configuration], cost: Mapping[str, float]) -> BoolArray:
    """D[i, j]: configuration j puts, at every stage, a model at least as large as i's."""
    c = np.array([[cost[m] for m in cfg] for cfg in configs])
    result: BoolArray = np.all(c[:, None, :] <= c[None, :, :], axis=2)
    return result


def closure(viable: BoolArray, dom: BoolArray | F32) -> BoolArray:
    """Upward closure of each row of ``viable`` (N, K) under ``dom`` (K, K); a server passes
    ``dom`` already as float32 so that no call converts it again."""
    closed: BoolArray = (viable.astype(np.float32) @ dom.astype(np.float32, copy=False)) > 0.5
    return closed


def class_scores(correct: BoolArray, largest: int) -> F32:
    """S (C, K) from the classes' correctness vectors (C, K)."""
    viable = correct | ~correct[:, [largest]]
    gain = correct & ~correct[:, [largest]]
    result: F32 = viable.astype(np.float32) + gain.astype(np.float32)
    return result


def config_scores(class_proba: F32, scores: F32) -> F32:
    """(N, C) class probabilities x (C, K) class scores -> (N, K)."""
    result: F32 = class_proba @ scores
    return result


def decide(
    prob: F32,
    threshold: float,
    dom: BoolArray | F32,
    largest: int,
    base: BoolArray | None = None,
    closable: BoolArray | None = None,
) -> BoolArray:
    """C(r) masks, (N, K): score over threshold, or in ``base`` (the per-workflow viable
    set, so a weak text signal can only add to what the workflow allows anyway), always
    c_max, then closure, which adds only configurations in ``closable`` (all when None)."""
    mask = prob >= threshold
    if base is not None:
        mask |= base[None, :]
    mask[:, largest] = True
    closed = closure(mask, dom)
    if closable is not None:
        closed &= mask | closable[None, :]
    return closed


def cheapest(mask: BoolArray, config_cost: FloatArray) -> NDArray[np.int64]:
    """Index of the cheapest configuration in each row's set."""
    result: NDArray[np.int64] = np.argmin(np.where(mask, config_cost[None, :], np.inf), axis=1)
    return result


def accuracy_loss(chosen: NDArray[np.int64], correct: BoolArray, largest: int) -> float:
    """Accuracy of all-largest minus accuracy of the chosen configurations (points / 100)."""
    rows = np.arange(len(chosen))
    return float(correct[:, largest].mean() - correct[rows, chosen].mean())


def set_loss(mask: BoolArray, correct: BoolArray, largest: int, config_cost: FloatArray) -> float:
    """Worse of two pickers' losses against c_max: the cheapest member, and a uniformly
    random one (in expectation). The scheduler picks by load, so the set must hold the
    target for more than its cheapest member."""
    cheap = accuracy_loss(cheapest(mask, config_cost), correct, largest)
    member_acc = (correct & mask).sum(axis=1) / mask.sum(axis=1)
    rand = float(correct[:, largest].mean() - member_acc.mean())
    return max(cheap, rand)


def calibrate_threshold(
    prob: F32,
    correct: BoolArray,
    dom: BoolArray,
    largest: int,
    config_cost: FloatArray,
    max_loss: float,
    base: BoolArray | None = None,
    grid: int = 300,
    closable: BoolArray | None = None,
) -> float:
    """Lowest threshold whose C(r) loses at most ``max_loss`` accuracy against c_max on these
    inputs (``set_loss``), scanning down from 1.5 and stopping at the first violation (so
    every threshold above the answer meets the target too)."""
    best = 1.5
    for t in np.linspace(1.5, 0.0, grid + 1):
        mask = decide(prob, float(t), dom, largest, base, closable)
        if set_loss(mask, correct, largest, config_cost) > max_loss:
            break
        best = float(t)
    return best


def single_choice(prob: F32, config_cost: FloatArray, lam: float) -> NDArray[np.int64]:
    """Per-input single-configuration router: argmax of score - lam * relative cost."""
    rel = config_cost / config_cost.max()
    result: NDArray[np.int64] = np.argmax(prob - lam * rel[None, :], axis=1)
    return result


def calibrate_single(
    prob: F32, correct: BoolArray, largest: int, config_cost: FloatArray, max_loss: float
) -> float:
    """Largest cost weight whose single choice loses at most ``max_loss`` accuracy."""
    best = 0.0
    for lam in np.linspace(0.0, 2.0, 201):
        if accuracy_loss(single_choice(prob, config_cost, float(lam)), correct, largest) > max_loss:
            break
        best = float(lam)
    return best


def static_choice(
    correct: BoolArray, largest: int, config_cost: FloatArray, max_loss: float
) -> int:
    """Per-workflow static: the cheapest configuration whose accuracy meets the target."""
    acc = correct.mean(axis=0)
    ok = acc >= acc[largest] - max_loss - 1e-12
    return int(np.flatnonzero(ok)[np.argmin(config_cost[ok])])


def accurate_set(correct: BoolArray, largest: int, max_loss: float) -> BoolArray:
    """Configurations whose accuracy on these inputs meets the target (c_max always): the
    ones monotone closure may add."""
    acc = correct.mean(axis=0)
    ok: BoolArray = acc >= acc[largest] - max_loss - 1e-12
    ok[largest] = True
    return ok


def static_viable_set(
    correct: BoolArray, largest: int, dom: BoolArray, max_loss: float
) -> BoolArray:
    """The conservative per-workflow set (the fallback, and the floor under every C(r)):
    configurations whose accuracy on these inputs meets the target *and* all of whose
    dominating configurations do too, so the closure cannot pull in a worse one (a cascade
    whose two solvers are the same model never escalates: larger, yet less accurate)."""
    ok = accurate_set(correct, largest, max_loss)
    result: BoolArray = ok & ~np.any(dom & ~ok[None, :], axis=1)
    return result
