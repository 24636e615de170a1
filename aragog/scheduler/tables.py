"""A workflow's configurations as bit positions, so a viable set C(r) is one Python int.

Narrowing C(r) to the configurations that put model m at stage s (prefix consistency),
asking whether any survive (projection) and counting them (flexibility) are then single
big-int operations: an AND, a truth test, ``bit_count``. The beam search does these
thousands of times per round, which frozensets of tuples could not afford.

Bit i stands for ``configs[i]``, the i-th configuration of ``WorkflowSpec.configurations()``
(itertools.product order), so the stage masks are periodic and built arithmetically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from aragog.workflow.spec import Configuration, WorkflowSpec

Mask = int


def _periodic(block: int, period: int, total: int) -> Mask:
    """``block`` (an int of < period bits) repeated every ``period`` bits over ``total``."""
    reps = total // period
    repunit = ((1 << (period * reps)) - 1) // ((1 << period) - 1)
    return block * repunit


class WorkflowTable:
    """Immutable index of one workflow's configurations; built once per workflow."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.stage_index = {s: i for i, s in enumerate(spec.stage_names)}
        self.configs: tuple[Configuration, ...] = tuple(spec.configurations())
        self.index = {c: i for i, c in enumerate(self.configs)}
        self.size = len(self.configs)
        self.full: Mask = (1 << self.size) - 1
        depths = spec.depths()
        self.depth = tuple(depths[s] for s in spec.stage_names)
        self.stage_models: tuple[tuple[str, ...], ...] = tuple(tuple(s.models) for s in spec.stages)
        # product() varies the last stage fastest: stage i's model index changes every
        # ``stride`` configurations, stride = product of the later stages' candidate counts.
        masks = []
        stride = self.size
        for models in self.stage_models:
            n = len(models)
            stride //= n
            period = stride * n
            masks.append(
                tuple(
                    _periodic(((1 << stride) - 1) << (j * stride), period, self.size)
                    for j in range(n)
                )
            )
        self.stage_masks: tuple[tuple[Mask, ...], ...] = tuple(masks)
        # Per configuration, each stage's model as an index into stage_models (for vector
        # arithmetic over all configurations), and a mask's size in bytes.
        self.model_index = np.array(
            [
                [models.index(m) for models, m in zip(self.stage_models, c, strict=True)]
                for c in self.configs
            ],
            dtype=np.intp,
        ).reshape(self.size, len(self.stage_models))
        self.nbytes = (self.size + 7) // 8

    def stage_mask(self, stage: int, model: str) -> Mask:
        models = self.stage_models[stage]
        return self.stage_masks[stage][models.index(model)] if model in models else 0

    def mask_of(self, viable: Iterable[Configuration] | None) -> Mask:
        """C(r) as a mask; configurations this workflow does not have are ignored."""
        if viable is None:
            return self.full
        mask = 0
        for c in viable:
            i = self.index.get(c)
            if i is not None:
                mask |= 1 << i
        return mask

    def consistent(self, chosen: Mapping[str, str]) -> Mask:
        """Configurations agreeing with every stage already given a model."""
        mask = self.full
        for stage, model in chosen.items():
            i = self.stage_index.get(stage)
            if i is not None:
                mask &= self.stage_mask(i, model)
        return mask

    def narrowed(self, viable: Iterable[Configuration] | None, chosen: Mapping[str, str]) -> Mask:
        """C(r) after prefix consistency; never empty.

        Choices already made are facts (the calls ran), so when they contradict the
        router's set (a router bug, or a policy change mid-request) they win; when they
        contradict the workflow itself nothing is left to honour and every configuration
        is allowed again rather than stranding the request.
        """
        done = self.consistent(chosen)
        return (self.mask_of(viable) & done) or done or self.full

    def allowed(self, mask: Mask, stage: int) -> tuple[str, ...]:
        """Projection of C(r) at a stage: the models some viable configuration puts there."""
        return tuple(
            m
            for m, sm in zip(self.stage_models[stage], self.stage_masks[stage], strict=True)
            if mask & sm
        )

    def members(self, mask: Mask) -> Iterable[Configuration]:
        while mask:
            low = mask & -mask
            yield self.configs[low.bit_length() - 1]
            mask ^= low

    def cheapest(self, mask: Mask, weight: Mapping[str, float]) -> Configuration:
        """Configuration in ``mask`` with the least summed per-model weight (first on ties,
        so the choice is deterministic)."""
        best: Configuration | None = None
        best_w = float("inf")
        for c in self.members(mask):
            w = sum(weight[m] for m in c)
            if w < best_w:
                best, best_w = c, w
        assert best is not None, "masks handed out are never empty"
        return best
