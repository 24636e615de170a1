"""Architectures of the simulated fleet's models (their public ``config.json`` values) and
of the models Vidur profiled, as far as the step-time model needs them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int
    q_heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    gated: bool = True

    @property
    def attn_params(self) -> int:
        """Per layer: q and o projections plus k and v."""
        q = self.q_heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return 2 * self.hidden * q + 2 * self.hidden * kv

    @property
    def mlp_params(self) -> int:
        return (3 if self.gated else 2) * self.hidden * self.intermediate

    @property
    def params(self) -> int:
        return self.layers * (self.attn_params + self.mlp_params) + 2 * self.vocab * self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """K and V of one token over all layers (the whole model, before tensor parallelism)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


# Fleet models (Hugging Face config.json of each).
FLEET: dict[str, Shape] = {
    "phi-3-mini": Shape(32, 3072, 8192, 32, 32, 96, 32064),
    "llama-3.1-8b": Shape(32, 4096, 14336, 32, 8, 128, 128256),
    "llama-3.1-70b": Shape(80, 8192, 28672, 64, 8, 128, 128256),
    "gemma-2-2b": Shape(26, 2304, 9216, 8, 4, 256, 256000),
    "gemma-2-9b": Shape(42, 3584, 14336, 16, 8, 256, 256000),
    "gemma-2-27b": Shape(46, 4608, 36864, 32, 16, 128, 256000),
    "qwen2.5-3b": Shape(36, 2048, 11008, 16, 2, 128, 151936),
    "qwen2.5-7b": Shape(28, 3584, 18944, 28, 4, 128, 152064),
    "qwen2.5-32b": Shape(64, 5120, 27648, 40, 8, 128, 152064),
    # the public reference points' models
    "llama-3-70b": Shape(80, 8192, 28672, 64, 8, 128, 128256),
}

# Profiled models (Vidur, H100), by their folder under profiling/compute/h100.
PROFILED: dict[str, Shape] = {
    "microsoft/phi-2": Shape(32, 2560, 10240, 32, 32, 80, 51200, gated=False),
    "meta-llama/Llama-2-7b-hf": Shape(32, 4096, 11008, 32, 32, 128, 32000),
    "internlm/internlm-20b": Shape(60, 5120, 13824, 40, 40, 128, 103168),
    "codellama/CodeLlama-34b-Instruct-hf": Shape(48, 8192, 22016, 64, 8, 128, 32000),
    "meta-llama/Llama-2-70b-hf": Shape(80, 8192, 28672, 64, 8, 128, 32000),
}


def reference_for(shape: Shape, tp: int) -> str:
    """The profiled model nearest in per-layer parameters that was profiled at ``tp``
    (phi-2 only at TP1): scaling from a near shape keeps the memory- vs compute-bound mix."""
    per_layer = shape.attn_params + shape.mlp_params
    options = [k for k in PROFILED if tp == 1 or k != "microsoft/phi-2"]
    return min(
        options,
        key=lambda k: abs(PROFILED[k].attn_params + PROFILED[k].mlp_params - per_layer) / per_layer,
    )
