"""The /status page: the live fleet and scheduler state for people who would rather look
than read, and the JSON it polls (``/status.json``, also what ``aragog.dashboard`` draws).

Everything here reads what the gateway already keeps (the current fleet snapshot, the
scheduler's ledger, the Prometheus registry); nothing is counted twice, so the page can
never disagree with ``/metrics``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import TypedDict

from prometheus_client import CollectorRegistry

from aragog.api.gateway import Gateway
from aragog.fleet.snapshot import EngineState
from aragog.scheduler.round import RoundPlan


class EngineView(TypedDict):
    id: str
    model: str
    url: str
    healthy: bool
    running: float
    waiting: float
    kv_usage: float
    inflight: int  # the gateway's own calls in flight there, or leased by the scheduler
    scrape_errors: int  # consecutive failed scrapes
    last_error: str | None


class StageView(TypedDict):
    name: str
    models: list[str]
    mix: dict[str, int]  # fleet model -> calls answered 200 at this stage


class WorkflowView(TypedDict):
    name: str
    policy: str
    stages: list[StageView]
    calls: int
    errors: int
    latency_p50_s: float | None  # per call, from the latency histogram
    latency_p95_s: float | None
    wait_mean_s: float | None  # time a call was held by its policy before dispatch
    router_fallbacks: int


class SchedulerView(TypedDict):
    queued: int
    rounds: int
    last_round: dict[str, float] | None  # assigned / skipped / unservable / gain
    skipped: int
    rejected: int


class StatusView(TypedDict):
    time: float
    ready: bool
    problems: list[str]
    snapshot_age_s: float
    engines: list[EngineView]
    scheduler: SchedulerView
    workflows: list[WorkflowView]


# -- reading the registry -------------------------------------------------------------------

Sample = tuple[str, dict[str, str], float]


def samples(registry: CollectorRegistry) -> list[Sample]:
    return [(s.name, dict(s.labels), s.value) for fam in registry.collect() for s in fam.samples]


def total(rows: Iterable[Sample], name: str, **match: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``match``."""
    return sum(
        v
        for n, labels, v in rows
        if n == name and all(labels.get(k) == x for k, x in match.items())
    )


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """Prometheus' estimate from cumulative ``(le, count)`` buckets (linear within a bucket);
    None without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower  # the +Inf bucket has no width: its lower edge is all we know
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def _buckets(rows: Iterable[Sample], name: str, **match: str) -> list[tuple[float, float]]:
    """Cumulative buckets of a histogram, summed over the label sets that match."""
    out: dict[float, float] = {}
    for n, labels, v in rows:
        if n == name + "_bucket" and all(labels.get(k) == x for k, x in match.items()):
            le = float(labels["le"])
            out[le] = out.get(le, 0.0) + v
    return list(out.items())


def _mean(rows: Sequence[Sample], name: str, **match: str) -> float | None:
    count = total(rows, name + "_count", **match)
    return total(rows, name + "_sum", **match) / count if count else None


# -- the view ------------------------------------------------------------------------------


def engine_view(st: EngineState, inflight: int) -> EngineView:
    """One engine's row, from its snapshot state and the calls we have on it."""
    m = st.metrics
    return {
        "id": st.ref.engine_id,
        "model": st.ref.model,
        "url": st.ref.url,
        "healthy": st.healthy,
        "running": m.running if m else 0.0,
        "waiting": m.waiting if m else 0.0,
        "kv_usage": m.kv_usage if m else 0.0,
        "inflight": inflight,
        "scrape_errors": st.consecutive_errors,
        "last_error": st.last_error,
    }


def collect(gw: Gateway) -> StatusView:
    rows = samples(gw.metrics.registry)
    ok, problems = gw.readiness()
    snap = gw.poller.snapshot
    ours = gw.scheduler.ours()
    engines = [
        engine_view(st, max(ours.get(eid, 0), gw.inflight.get(eid)))
        for eid, st in snap.engines.items()
    ]
    return {
        "time": time.time(),
        "ready": ok,
        "problems": problems,
        "snapshot_age_s": max(0.0, gw.clock() - snap.taken_at),
        "engines": engines,
        "scheduler": _scheduler(gw, rows),
        "workflows": [_workflow(gw, name, rows) for name in gw.workflows],
    }


def round_view(plan: RoundPlan | None) -> dict[str, float] | None:
    """The last scheduling round in a few numbers (also the simulated demo's)."""
    if plan is None:
        return None
    return {
        "assigned": float(len(plan.assignments)),
        "skipped": float(len(plan.skipped)),
        "unservable": float(len(plan.unservable)),
        "gain": plan.gain,
    }


def _scheduler(gw: Gateway, rows: Sequence[Sample]) -> SchedulerView:
    return {
        "queued": len(gw.scheduler),
        "rounds": int(total(rows, "aragog_scheduler_round_seconds_count")),
        "last_round": round_view(gw.scheduler.last_plan),
        "skipped": int(total(rows, "aragog_scheduler_skipped_total")),
        "rejected": int(total(rows, "aragog_scheduler_rejected_total")),
    }


def _workflow(gw: Gateway, name: str, rows: Sequence[Sample]) -> WorkflowView:
    spec = gw.workflows[name]
    answered = [
        (labels, v)
        for n, labels, v in rows
        if n == "aragog_requests_total" and labels.get("workflow") == name
    ]
    stages: list[StageView] = []
    for stage in spec.stages:
        mix: dict[str, int] = {}
        for labels, v in answered:
            if labels["stage"] == stage.name and labels["status"] == "200" and v:
                mix[labels["model"]] = mix.get(labels["model"], 0) + int(v)
        stages.append({"name": stage.name, "models": list(stage.models), "mix": mix})
    latency = _buckets(rows, "aragog_request_latency_seconds", workflow=name)
    return {
        "name": name,
        "policy": gw.policies[name].name,
        "stages": stages,
        "calls": int(sum(v for _, v in answered)),
        "errors": int(sum(v for labels, v in answered if labels["status"] != "200")),
        "latency_p50_s": histogram_quantile(latency, 0.5),
        "latency_p95_s": histogram_quantile(latency, 0.95),
        "wait_mean_s": _mean(rows, "aragog_schedule_wait_seconds", workflow=name),
        "router_fallbacks": int(total(rows, "aragog_router_fallbacks_total", workflow=name)),
    }


# -- the page ------------------------------------------------------------------------------

# One self-contained page (no CDN: operators' networks often have no way out). It renders
# from /status.json once a second; without JavaScript it still says where the JSON is.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Aragog status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;background:#f7f7f9;color:#1d1d22}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.meta{color:#555} .ok{color:#137333;font-weight:600} .bad{color:#b3261e;font-weight:600}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;min-width:640px}
th,td{padding:6px 10px;border-bottom:1px solid #e4e4ea;text-align:left;white-space:nowrap}
th{background:#2b2d42;color:#fff;font-weight:600} td.num{text-align:right}
.bar{display:inline-block;height:10px;background:#4f7cff;border-radius:2px;vertical-align:middle}
.bar.kv{background:#ff8c42} .chip{display:inline-block;padding:1px 6px;margin:1px;
border-radius:8px;background:#e8edff;font-size:12px}
</style></head>
<body>
<h1>Aragog</h1>
<div class="meta" id="summary">loading <a href="status.json">status.json</a> ...</div>
<h2>Engines</h2>
<table id="engines"><thead><tr><th>engine</th><th>model</th><th>health</th><th>running</th>
<th>waiting</th><th>gateway in flight</th><th>KV cache</th><th>last error</th></tr></thead>
<tbody></tbody></table>
<h2>Scheduler</h2><div id="scheduler" class="meta"></div>
<h2>Workflows</h2>
<table id="workflows"><thead><tr><th>workflow / stage</th><th>policy</th><th>calls</th>
<th>errors</th><th>p50 / p95 call latency</th><th>mean wait</th><th>model mix</th></tr></thead>
<tbody></tbody></table>
<script>
"use strict";
const esc = s => String(s ?? "").replace(/[&<>"']/g,
  c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"})[c]);
const ms = s => s == null ? "-" : (s * 1000).toFixed(s < 0.1 ? 1 : 0) + " ms";
const bar = (v, cls) => `<span class="bar ${cls}" style="width:${Math.round(
  Math.min(v, 1) * 80)}px"></span> `;
function engineRow(e) {
  const load = e.running + e.waiting;
  return `<tr class="engine-row" data-engine="${esc(e.id)}"><td>${esc(e.id)}</td>
  <td>${esc(e.model)}</td><td class="${e.healthy ? "ok" : "bad"}">${e.healthy ? "healthy"
  : "down"}</td><td class="num">${bar(load / 16, "")}${e.running}</td>
  <td class="num">${e.waiting}</td><td class="num">${e.inflight}</td>
  <td class="num">${bar(e.kv_usage, "kv")}${(e.kv_usage * 100).toFixed(0)}%</td>
  <td>${esc(e.last_error)}</td></tr>`;
}
function mix(m) {
  const n = Object.values(m).reduce((a, b) => a + b, 0);
  return Object.entries(m).map(([k, v]) =>
    `<span class="chip">${esc(k)} ${Math.round(100 * v / n)}%</span>`).join("") || "-";
}
function workflowRows(w) {
  const head = `<tr class="workflow-row"><td><b>${esc(w.name)}</b></td><td>${esc(w.policy)}
  </td><td class="num">${w.calls}</td><td class="num">${w.errors}</td>
  <td>${ms(w.latency_p50_s)} / ${ms(w.latency_p95_s)}</td><td>${ms(w.wait_mean_s)}</td>
  <td>router fallbacks: ${w.router_fallbacks}</td></tr>`;
  return head + w.stages.map(s => `<tr class="stage-row"><td>&nbsp;&nbsp;${esc(s.name)}</td>
  <td colspan="5" class="meta">${s.models.map(esc).join(", ")}</td><td>${mix(s.mix)}</td>
  </tr>`).join("");
}
function render(st) {
  const healthy = st.engines.filter(e => e.healthy).length;
  document.getElementById("summary").innerHTML =
    `<span class="${st.ready ? "ok" : "bad"}">${st.ready ? "ready" : "not ready"}</span>
    &middot; ${healthy}/${st.engines.length} engines healthy &middot; fleet snapshot
    ${ms(st.snapshot_age_s)} old &middot; updated ${new Date(st.time * 1000)
    .toLocaleTimeString()} ${st.problems.map(p => "<br>" + esc(p)).join("")}`;
  document.querySelector("#engines tbody").innerHTML = st.engines.map(engineRow).join("");
  const s = st.scheduler, r = s.last_round;
  document.getElementById("scheduler").textContent = `${s.queued} calls queued; ${s.rounds}
    rounds; last round: ${r ? `${r.assigned} assigned, ${r.skipped} skipped` : "none yet"};
    ${s.skipped} skips and ${s.rejected} rejections in all`;
  document.querySelector("#workflows tbody").innerHTML =
    st.workflows.map(workflowRows).join("");
}
async function poll() {
  try {
    const resp = await fetch("status.json", {cache: "no-store"});
    if (resp.ok) render(await resp.json());
  } catch (err) {
    document.getElementById("summary").textContent = "gateway unreachable: " + err;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body></html>
"""
