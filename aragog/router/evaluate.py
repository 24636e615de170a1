"""Held-out evaluation: what the scheduler would get from C(r) under several pickers, against
the baselines a per-workflow or per-input router would give."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from aragog.router import decision
from aragog.router.artifact import Artifact
from aragog.router.progress import Progress
from aragog.router.train import Prepared

I64 = NDArray[np.int64]


@dataclass(frozen=True)
class PolicyResult:
    name: str
    accuracy: float
    loss_pts: float  # all-largest accuracy minus this, in points
    mean_cost: float  # realised FLOPs proxy per request
    flops_saved: float  # 1 - mean_cost / all-largest's
    set_share: float  # mean |C(r)| / K (1/K for single-configuration policies)


@dataclass(frozen=True)
class EvalReport:
    workflow: str
    source: str
    n_test: int
    k: int
    threshold: float
    policies: tuple[PolicyResult, ...]

    def policy(self, name: str) -> PolicyResult:
        return next(p for p in self.policies if p.name == name)


def evaluate(art: Artifact, prep: Prepared, seed: int = 0, progress: bool = False) -> EvalReport:
    o, te = prep.outcomes, prep.masks["test"]
    bar = Progress(f"eval {art.workflow}", 7, enabled=progress)
    cost = np.array(art.config_cost)
    k = len(art.configurations)
    dom = decision.dominance(art.configurations, art.model_cost)
    prob_te = decision.config_scores(art.mlp.proba(prep.x[te]), art.scores)
    correct, realised, viable = o.correct[te], o.cost[te], o.viable[te]
    n = int(te.sum())
    closable = None if art.closable is None else np.array(art.closable)
    mask = decision.decide(prob_te, art.threshold, dom, o.largest, np.array(art.fallback), closable)
    share = float(mask.mean())
    rng = np.random.default_rng(seed)

    def row(name: str, chosen: I64, set_share: float) -> PolicyResult:
        bar.update(1, name)
        r = np.arange(n)
        acc = float(correct[r, chosen].mean())
        base_acc = float(correct[:, o.largest].mean())
        c = float(realised[r, chosen].mean())
        base_c = float(realised[:, o.largest].mean())
        return PolicyResult(name, acc, 100 * (base_acc - acc), c, 1 - c / base_c, set_share)

    lam = float(art.info["single_lambda"])
    static = int(art.info["static_config"])
    fallback = np.array(art.fallback)[None, :].repeat(n, axis=0)
    policies = (
        row("all-largest", np.full(n, o.largest), 1 / k),
        row("static (per-workflow)", np.full(n, static), 1 / k),
        row("single-config router", decision.single_choice(prob_te, cost, lam), 1 / k),
        row("fallback set, cheapest", decision.cheapest(fallback, cost), float(fallback.mean())),
        row("C(r), cheapest", decision.cheapest(mask, cost), share),
        row("C(r), random", _random_member(mask, rng), share),
        row("oracle", decision.cheapest(viable, cost), float(viable.mean())),
    )
    return EvalReport(art.workflow, str(art.info.get("source", "")), n, k, art.threshold, policies)


def _random_member(mask: NDArray[np.bool_], rng: np.random.Generator) -> I64:
    scores = np.where(mask, rng.random(mask.shape), -1.0)
    result: I64 = np.argmax(scores, axis=1)
    return result


def markdown(reports: list[EvalReport]) -> str:
    lines = [
        "| workflow | policy | accuracy | Δ vs all-largest (pts) | mean cost | FLOPs saved "
        "| mean C(r)/K |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for rep in reports:
        for p in rep.policies:
            lines.append(
                f"| {rep.workflow} | {p.name} | {100 * p.accuracy:.1f}% | {-p.loss_pts:+.1f} | "
                f"{p.mean_cost:.1f} | {100 * p.flops_saved:.0f}% | {100 * p.set_share:.1f}% |"
            )
    return "\n".join(lines) + "\n"
