"""The step-time model: the formula against hand-computed values, and the calibration
against Vidur's measured rows and the public end-to-end points."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from aragog.router.builders import default_data_dir
from aragog.sim.perf import (
    MAX_TOKENS,
    StepModel,
    build,
    fit_attention,
    public_checks,
)
from aragog.sim.shapes import FLEET, PROFILED, reference_for

VIDUR = default_data_dir() / "vidur" / "profiling"
needs_data = pytest.mark.skipif(not VIDUR.exists(), reason="needs ../shared/data/vidur")


def toy(overhead: float = 0.001) -> StepModel:
    return StepModel(
        name="toy",
        tp=1,
        layers=10,
        linear_ms=tuple(0.1 + 0.001 * n for n in range(MAX_TOKENS + 1)),
        lm_head_ms=tuple(0.5 + 0.01 * n for n in range(MAX_TOKENS + 1)),
        decode_ms_per_kv=1e-5,
        decode_ms=0.02,
        prefill_ms=0.03,
        prefill_ms_per_flop=1e-9,
        prefill_flop_coef=100.0,
        overhead_s=overhead,
        kv_capacity_tokens=10_000,
        kv_bytes_per_token=1,
    )


@pytest.mark.parametrize(
    ("tokens", "seqs", "kv", "chunks", "expected_ms"),
    [
        # decode only: 8 tokens; per layer 0.108 + 0.02 + 800e-5; x10 layers; head 0.58; +1 ms
        (8, 8, 800, [], (0.108 + 0.02 + 0.008) * 10 + 0.58 + 1.0),
        # one prefill chunk of 100 after 50: FLOPs 100 * 100 * (50 + 50) = 1e6 -> 1e-3 ms
        (100, 1, 0, [(100, 50)], (0.2 + 0.03 + 0.001) * 10 + 0.51 + 1.0),
        # mixed
        (
            108,
            9,
            800,
            [(100, 0)],
            (0.208 + 0.02 + 0.008 + 0.03 + 100 * 100 * 50 * 1e-9) * 10 + 0.59 + 1.0,
        ),
    ],
)
def test_step_time_by_hand(
    tokens: int, seqs: int, kv: int, chunks: list[tuple[int, int]], expected_ms: float
) -> None:
    assert toy().step_s(tokens, seqs, kv, chunks) == pytest.approx(expected_ms / 1000)


def _profile_row(ref: str, tp: int, n: int) -> dict[str, str]:
    with gzip.open(VIDUR / "compute" / "h100" / ref / "mlp.csv.gz", "rt") as f:
        for r in csv.DictReader(f):
            if int(r["num_tokens"]) == n and int(r["num_tensor_parallel_workers"]) == tp:
                return r
    raise AssertionError("row not found")


@needs_data
def test_profiled_shape_reproduces_its_own_measurements() -> None:
    """For the very model that was profiled, scaling is 1: the linear time at a measured N
    is the sum of the measured operations (no attention, no LM head)."""
    ref = "meta-llama/Llama-2-7b-hf"
    model = build("llama-2-7b", PROFILED[ref], 1, VIDUR)
    row = _profile_row(ref, 1, 256)
    ops = [
        *("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj", "mlp_act"),
        *("input_layernorm", "attn_rope", "post_attention_layernorm", "add"),
    ]
    assert model.linear_ms[256] == pytest.approx(
        sum(float(row[f"time_stats.{o}.median"]) for o in ops)
    )
    # Vidur rounds tokens up to a multiple of 8 before the lookup
    assert model.linear_ms[250] == model.linear_ms[256]


@needs_data
def test_attention_fit_and_public_points() -> None:
    fit = fit_attention(VIDUR)
    assert fit.decode_err < 0.15 and fit.prefill_err < 0.30
    for c in public_checks(VIDUR):
        assert abs(c.error) < 0.35, c


@needs_data
def test_fleet_models_build_and_fit_their_gpus() -> None:
    for name, tp in [("phi-3-mini", 1), ("llama-3.1-8b", 2), ("llama-3.1-70b", 4)]:
        m = build(name, FLEET[name], tp, VIDUR)
        assert m.kv_capacity_tokens > 50_000
        # flat then linear: a 256-token step costs far less than 32 x an 8-token step
        assert m.step_s(256, 256, 0, []) < 4 * m.step_s(8, 8, 0, [])
    with pytest.raises(ValueError, match="does not fit"):
        build("llama-3.1-70b", FLEET["llama-3.1-70b"], 1, VIDUR)
    assert reference_for(FLEET["llama-3.1-70b"], 4) == "meta-llama/Llama-2-70b-hf"


def test_data_dir_is_where_ci_keeps_it() -> None:
    assert isinstance(default_data_dir(), Path)
