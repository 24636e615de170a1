"""The /metrics parser: table-driven cases plus a real scrape captured from vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from aragog.config import MetricNames
from aragog.fleet.metrics import MetricsParseError, parse_engine_metrics, parse_labels

NAMES = MetricNames()
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vllm_metrics_v1.txt"

V1_DP2 = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 4.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6
vllm:num_preemptions_total{engine="0",model_name="m"} 7.0
vllm:generation_tokens_total{engine="0",model_name="m"} 100.0
vllm:generation_tokens_total{engine="1",model_name="m"} 50.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e9
vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="4096"} 1.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="m"} 3.0
"""

LEGACY = """\
vllm:num_requests_running{model_name="m"} 1
vllm:num_requests_waiting{model_name="m"} 0
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
vllm:prompt_tokens{model_name="m"} 12
"""


def test_v1_sums_over_data_parallel_engines() -> None:
    m = parse_engine_metrics(V1_DP2, NAMES)
    assert (m.running, m.waiting) == (5.0, 4.0)
    assert m.kv_usage == pytest.approx(0.4)  # a fraction per rank: averaged, not summed
    assert m.generation_tokens == 150.0 and m.preemptions == 7.0
    assert (m.block_size, m.num_gpu_blocks) == (16, 4096)


def test_legacy_names_accepted() -> None:
    m = parse_engine_metrics(LEGACY, NAMES)
    assert (m.running, m.waiting, m.kv_usage, m.prompt_tokens) == (1.0, 0.0, 0.25, 12.0)


def test_names_come_from_configuration() -> None:
    names = NAMES.model_copy(update={"running": ["custom:running"]})
    text = LEGACY.replace("vllm:num_requests_running", "custom:running")
    assert parse_engine_metrics(text, names).running == 1.0


@pytest.mark.parametrize(
    "text", ["", "<html>not metrics</html>", "vllm:num_requests_running 1\n"]
)
def test_not_a_vllm_page(text: str) -> None:
    with pytest.raises(MetricsParseError):
        parse_engine_metrics(text, NAMES)


def test_nan_and_garbage_lines_ignored() -> None:
    text = LEGACY + 'vllm:num_requests_running{model_name="x"} NaN\nvllm:num_requests_waiting{\n'
    assert parse_engine_metrics(text, NAMES).running == 1.0


@pytest.mark.parametrize(
    ("raw", "labels"),
    [
        ("", {}),
        ('a="1"', {"a": "1"}),
        ('a="1",b="x y"', {"a": "1", "b": "x y"}),
        ('a="q\\"uote",b="2"', {"a": 'q"uote', "b": "2"}),
        ('a="1",', {"a": "1"}),
    ],
)
def test_parse_labels(raw: str, labels: dict[str, str]) -> None:
    assert parse_labels(raw) == labels


def test_real_vllm_scrape() -> None:
    """Captured from vLLM 0.32 (CPU) with --max-num-seqs 2 and eight long requests."""
    m = parse_engine_metrics(FIXTURE.read_text(), NAMES)
    assert m.running == 2.0 and m.waiting == 6.0
    assert 0.0 < m.kv_usage <= 1.0
    assert m.prompt_tokens > 0 and m.generation_tokens > 0
    assert m.block_size is not None and m.num_gpu_blocks is not None
