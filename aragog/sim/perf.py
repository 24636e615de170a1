"""Step-time model of a vLLM-style engine on H100s, calibrated from Vidur's measured kernels.

Per layer, a batch step costs the non-attention operations measured at N = total tokens in
the step (prefill chunk tokens + one per decoding request, rounded up to a multiple of 8, as
Vidur does), scaled from the profiled model nearest in shape by the ratio of parameters each
operation touches; plus attention, which no public H100 profile covers: decode from the KV
bytes it reads over memory bandwidth, prefill from its FLOPs, both fitted on the one public
attention profile (A100) and scaled by the H100/A100 bandwidth and FLOP ratios; plus two
all-reduces when tensor parallel. Then the LM head on one token per sequence and a fixed
per-step CPU overhead (scheduling, sampling, detokenising), the only free constant, fitted
on one public measurement and checked on another.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from aragog.sim.shapes import PROFILED, Shape, reference_for

H100_BW = 3.35e12  # bytes/s, SXM HBM3
A100_BW = 2.039e12  # bytes/s, 80GB SXM
H100_FLOPS = 989e12  # dense bf16
A100_FLOPS = 312e12
GPU_BYTES = 80e9
MEM_UTIL = 0.9  # vLLM's gpu_memory_utilization default
ACTIVATION_RESERVE = 3e9  # per GPU: activations, CUDA graphs, allocator slack
STEP_OVERHEAD_S = 0.0  # vLLM V1 overlaps scheduling with the GPU; see public_checks()
MAX_TOKENS = 4096  # the profiles' range; the engine's chunk budget stays below it

_ATTN_OPS = ("attn_pre_proj", "attn_post_proj")
_MLP_OPS = ("mlp_up_proj", "mlp_down_proj")
_HIDDEN_OPS = ("input_layernorm", "attn_rope", "post_attention_layernorm", "add")
_INTER_OPS = ("mlp_act",)

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AttentionFit:
    """Per layer, milliseconds: decode = a + bytes / bw; prefill = a + flops / flops_rate."""

    decode_ms: float
    decode_bw: float  # bytes/s on the profiled GPU
    prefill_ms: float
    prefill_flops: float  # FLOP/s on the profiled GPU
    decode_err: float  # median relative error of the fit on the measured rows
    prefill_err: float


@dataclass(frozen=True, slots=True)
class StepModel:
    """Step time of one (model, TP) engine; ``step_s`` is the only thing the engine calls."""

    name: str
    tp: int
    layers: int
    linear_ms: tuple[float, ...]  # per layer, by N (index 0..MAX_TOKENS), incl. all-reduce
    lm_head_ms: tuple[float, ...]  # whole step, by sequences sampled
    decode_ms_per_kv: float  # per layer, per token of KV read
    decode_ms: float  # per layer, fixed
    prefill_ms: float  # per layer, per chunk, fixed
    prefill_ms_per_flop: float  # per layer
    prefill_flop_coef: float  # FLOPs = coef * chunk * (past + chunk / 2)
    overhead_s: float
    kv_capacity_tokens: int
    kv_bytes_per_token: int  # per GPU shard

    def step_s(
        self, tokens: int, seqs: int, kv_read: int, chunks: Sequence[tuple[int, int]]
    ) -> float:
        """One step: ``tokens`` in the batch, ``seqs`` sequences sampling a token, ``kv_read``
        KV tokens read by decoding sequences, ``chunks`` (chunk, past) of prefilling ones."""
        n = min(tokens, MAX_TOKENS)
        per_layer = self.linear_ms[n]
        if kv_read:
            per_layer += self.decode_ms + kv_read * self.decode_ms_per_kv
        for chunk, past in chunks:
            flops = self.prefill_flop_coef * chunk * (past + chunk / 2)
            per_layer += self.prefill_ms + flops * self.prefill_ms_per_flop
        head = self.lm_head_ms[min(seqs, MAX_TOKENS)]
        return (per_layer * self.layers + head) / 1000.0 + self.overhead_s


def _read_gz_csv(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@cache
def _op_tables(profile_dir: Path, ref: str, tp: int) -> dict[str, F64]:
    """Median time (ms) of each operation at every N in 0..MAX_TOKENS, interpolated."""
    rows = _read_gz_csv(profile_dir / "compute" / "h100" / ref / "mlp.csv.gz")
    rows = [r for r in rows if int(r["num_tensor_parallel_workers"]) == tp]
    if not rows:
        raise ValueError(f"{ref}: no profile at TP{tp}")
    rows.sort(key=lambda r: int(r["num_tokens"]))
    n = np.array([int(r["num_tokens"]) for r in rows], dtype=np.float64)
    grid = np.arange(MAX_TOKENS + 1, dtype=np.float64)
    # Vidur rounds a batch's tokens up to a multiple of 8 before looking a time up.
    rounded = np.maximum(8 * np.ceil(grid / 8), 1)
    out: dict[str, F64] = {}
    for op in (*_ATTN_OPS, *_MLP_OPS, *_HIDDEN_OPS, *_INTER_OPS):
        y = np.array([float(r.get(f"time_stats.{op}.median") or 0) for r in rows])
        out[op] = np.interp(rounded, n, y)
    return out


@cache
def _all_reduce(profile_dir: Path, tp: int) -> tuple[F64, F64]:
    """(message bytes, median ms) for all-reduce over ``tp`` H100s of one NVSwitch (DGX)
    node, like the paper's 8-GPU server."""
    rows = _read_gz_csv(profile_dir / "network" / "h100_dgx" / "all_reduce.csv.gz")
    pts = sorted(
        (float(r["size"]), float(r["time_stats.all_reduce.median"]))
        for r in rows
        if int(r["num_workers"]) == tp and r["rank"] == "0"
    )
    if not pts:
        raise ValueError(f"no all-reduce profile for TP{tp}")
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


@cache
def fit_attention(profile_dir: Path) -> AttentionFit:
    """Least-squares fits on the public A100 attention profile (8192 hidden, 64 q / 8 kv
    heads, head 128, TP2), in that profile's own units."""
    rows = _read_gz_csv(profile_dir / "compute" / "a100" / "attention_70b_shape_tp2.csv.gz")
    kv_bytes = 2 * (8 // 2) * 128 * 2  # K+V, kv heads per shard, head dim, fp16
    dec = [r for r in rows if r["is_prefill"] == "False" and r["time_stats.attn_decode.median"]]
    x = np.array([int(r["batch_size"]) * int(r["kv_cache_size"]) * kv_bytes for r in dec], float)
    y = np.array([float(r["time_stats.attn_decode.median"]) for r in dec])
    d_a, d_b = _affine(x, y)
    pre = [r for r in rows if r["is_prefill"] == "True" and r["time_stats.attn_prefill.median"]]
    coef = 4 * (64 // 2) * 128  # QK^T and PV, 2 FLOPs each, per q head per shard
    px = np.array(
        [
            int(r["batch_size"])
            * coef
            * int(r["prefill_chunk_size"])
            * (int(r["kv_cache_size"]) + int(r["prefill_chunk_size"]) / 2)
            for r in pre
        ]
    )
    py = np.array([float(r["time_stats.attn_prefill.median"]) for r in pre])
    p_a, p_b = _affine(px, py)
    return AttentionFit(
        decode_ms=d_a,
        decode_bw=1e3 / d_b,
        prefill_ms=p_a,
        prefill_flops=1e3 / p_b,
        decode_err=_median_rel_err(x, y, d_a, d_b),
        prefill_err=_median_rel_err(px, py, p_a, p_b),
    )


def _affine(x: F64, y: F64) -> tuple[float, float]:
    a = np.vstack([np.ones_like(x), x]).T
    (c0, c1), *_ = np.linalg.lstsq(a, y, rcond=None)
    return max(float(c0), 0.0), float(c1)


def _median_rel_err(x: F64, y: F64, a: float, b: float) -> float:
    ok = y > 0
    return float(np.median(np.abs(a + b * x[ok] - y[ok]) / y[ok]))


def _total(ops: dict[str, F64], names: Sequence[str]) -> F64:
    out: F64 = np.sum([ops[o] for o in names], axis=0)
    return out


def build(
    name: str,
    shape: Shape,
    tp: int,
    profile_dir: Path,
    overhead_s: float = STEP_OVERHEAD_S,
) -> StepModel:
    ref_name = reference_for(shape, tp)
    ref = PROFILED[ref_name]
    ops = _op_tables(profile_dir, ref_name, tp)
    attn_r = shape.attn_params / ref.attn_params
    mlp_r = shape.mlp_params / ref.mlp_params
    hid_r = shape.hidden / ref.hidden
    inter_r = shape.intermediate / ref.intermediate
    linear: F64 = (
        _total(ops, _ATTN_OPS) * attn_r
        + _total(ops, _MLP_OPS) * mlp_r
        + _total(ops, _HIDDEN_OPS) * hid_r
        + _total(ops, _INTER_OPS) * inter_r
    )
    if tp > 1:
        sizes, times = _all_reduce(profile_dir, tp)
        msg = np.arange(MAX_TOKENS + 1) * shape.hidden * 2.0
        linear = linear + 2 * np.asarray(np.interp(msg, sizes, times))
    # LM head: a (vocab x hidden / tp) matmul on one token per sequence, scaled from the
    # profiled up-projection (hidden x intermediate, x2 when gated, / tp) at the same N.
    up_params = ref.hidden * ref.intermediate * (2 if ref.gated else 1)
    head = ops["mlp_up_proj"] * (shape.vocab * shape.hidden / up_params)
    att = fit_attention(profile_dir)
    kv_shard = shape.kv_bytes_per_token() // tp
    h100_bw = att.decode_bw * H100_BW / A100_BW
    h100_flops = att.prefill_flops * H100_FLOPS / A100_FLOPS
    weights = shape.params * 2.0
    free = tp * (GPU_BYTES * MEM_UTIL - ACTIVATION_RESERVE) - weights
    if free <= 0:
        raise ValueError(f"{name} does not fit on {tp} H100s")
    return StepModel(
        name=name,
        tp=tp,
        layers=shape.layers,
        linear_ms=tuple(float(v) for v in linear),
        lm_head_ms=tuple(float(v) for v in head),
        decode_ms_per_kv=1e3 * (kv_shard / shape.layers) / h100_bw,
        decode_ms=att.decode_ms,
        prefill_ms=att.prefill_ms,
        prefill_ms_per_flop=1e3 / h100_flops,
        prefill_flop_coef=4.0 * (shape.q_heads // tp) * shape.head_dim,
        overhead_s=overhead_s,
        kv_capacity_tokens=int(free // shape.kv_bytes_per_token()),
        kv_bytes_per_token=kv_shard,
    )


def blocks(tokens: int, block_size: int = 16) -> int:
    return math.ceil(tokens / block_size)


@dataclass(frozen=True, slots=True)
class Check:
    what: str
    public_s: float
    model_s: float

    @property
    def error(self) -> float:
        return self.model_s / self.public_s - 1.0


# Public end-to-end points (H100, vLLM, batch 8, 32 prompt / 128 output tokens per request),
# as quoted in issue 5: seconds per request.
PUBLIC_POINTS = (("llama-3.1-8b", 1, 1.0), ("llama-3-70b", 4, 2.4))


def batch_latency(model: StepModel, batch: int, prompt: int, out: int) -> float:
    """Seconds until the last of ``batch`` identical requests, submitted together, ends."""
    from aragog.sim.engine import Seq, SimEngine

    eng = SimEngine("check", model)
    for i in range(batch):
        eng.submit(Seq(i, prompt, out), 0.0)
    now = 0.0
    while (t := eng.next_time) is not None:
        now = t
        eng.finish_step(now)
    return now


def public_checks(profile_dir: Path) -> list[Check]:
    from aragog.sim.shapes import FLEET

    return [
        Check(
            f"{name} TP{tp}, batch 8, 32 in / 128 out",
            public,
            batch_latency(build(name, FLEET[name], tp, profile_dir), 8, 32, 128),
        )
        for name, tp, public in PUBLIC_POINTS
    ]
