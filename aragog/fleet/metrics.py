"""Pure parsing of a vLLM ``/metrics`` page into the few numbers routing needs.

vLLM's page is large (histograms for every latency), so we skip lines by name before
parsing labels; a full Prometheus parser would cost milliseconds per scrape at 10 Hz.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from aragog.config import MetricNames


@dataclass(frozen=True, slots=True)
class EngineMetrics:
    running: float
    waiting: float
    kv_usage: float
    preemptions: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    prefix_cache_hits: float = 0.0
    prefix_cache_queries: float = 0.0
    request_success: float = 0.0
    block_size: int | None = None
    num_gpu_blocks: int | None = None


class MetricsParseError(ValueError):
    pass


def _split_sample(line: str) -> tuple[str, str, float] | None:
    """``name{labels} value [timestamp]`` -> (name, raw labels, value)."""
    brace = line.find("{")
    if brace >= 0:
        close = line.rfind("}")
        if close < brace:
            return None
        name, labels, rest = line[:brace], line[brace + 1 : close], line[close + 1 :]
    else:
        name, _, rest = line.partition(" ")
        labels = ""
    fields = rest.split()
    if not fields:
        return None
    try:
        return name, labels, float(fields[0])
    except ValueError:
        return None


def parse_labels(raw: str) -> dict[str, str]:
    """Parse ``a="x",b="y"`` honouring escaped quotes inside values."""
    out: dict[str, str] = {}
    i, n = 0, len(raw)
    while i < n:
        eq = raw.find("=", i)
        if eq < 0:
            break
        key = raw[i:eq].strip().lstrip(",").strip()
        j = eq + 2  # skip '="'
        value = []
        while j < n and raw[j] != '"':
            if raw[j] == "\\" and j + 1 < n:
                j += 1
                value.append({"n": "\n"}.get(raw[j], raw[j]))
            else:
                value.append(raw[j])
            j += 1
        out[key] = "".join(value)
        i = j + 1
    return out


def scan(text: str, wanted: Iterable[str]) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Collect every sample value of the wanted names (one per label set, e.g. per
    data-parallel ``engine``) and the labels of the last sample of each wanted name."""
    names = frozenset(wanted)
    values: dict[str, list[float]] = {}
    labels: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        cut = line.find("{")
        head = line[:cut] if cut >= 0 else line.partition(" ")[0]
        if head not in names:
            continue
        sample = _split_sample(line)
        if sample is None or math.isnan(sample[2]):
            continue
        values.setdefault(sample[0], []).append(sample[2])
        labels[sample[0]] = sample[1]
    return values, labels


def _first(values: dict[str, list[float]], names: list[str]) -> list[float] | None:
    for n in names:
        if n in values:
            return values[n]
    return None


def parse_engine_metrics(text: str, names: MetricNames) -> EngineMetrics:
    """Gauges and counters are summed over label sets (data-parallel ranks); KV usage is a
    fraction per rank, so ranks are averaged instead."""
    counters = {
        "preemptions": names.preemptions,
        "prompt_tokens": names.prompt_tokens,
        "generation_tokens": names.generation_tokens,
        "prefix_cache_hits": names.prefix_cache_hits,
        "prefix_cache_queries": names.prefix_cache_queries,
        "request_success": names.request_success,
    }
    wanted = [*names.running, *names.waiting, *names.kv_usage, names.cache_config_info]
    for alternatives in counters.values():
        wanted += alternatives
    values, labels = scan(text, wanted)
    running = _first(values, names.running)
    waiting = _first(values, names.waiting)
    kv = _first(values, names.kv_usage)
    if running is None or waiting is None or kv is None:
        missing = [
            k
            for k, v in (("running", running), ("waiting", waiting), ("kv_usage", kv))
            if v is None
        ]
        raise MetricsParseError(f"no sample for {', '.join(missing)} (is this a vLLM engine?)")
    info = parse_labels(labels.get(names.cache_config_info, ""))
    return EngineMetrics(
        running=sum(running),
        waiting=sum(waiting),
        kv_usage=sum(kv) / len(kv),
        **{k: sum(_first(values, v) or [0.0]) for k, v in counters.items()},
        block_size=_int_or_none(info.get("block_size")),
        num_gpu_blocks=_int_or_none(info.get("num_gpu_blocks")),
    )


def _int_or_none(v: str | None) -> int | None:
    if v is None:
        return None
    try:
        return int(float(v))
    except ValueError:
        return None
