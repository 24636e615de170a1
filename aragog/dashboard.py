"""A live terminal view of a gateway: per-engine load, the model mix per stage, queue waits
and latency, drawn with ``rich`` from the same ``StatusView`` the /status page shows.

    python -m aragog.dashboard --url http://127.0.0.1:8000

``render`` is a pure function of one view, so the demo draws the live gateway and the
simulated fleet with the same code.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import cast

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aragog.api.status import EngineView, StatusView, WorkflowView

# One colour per model, in the order models first appear, so a model keeps its colour in
# every table of a frame.
_PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_green")
_BAR = 24


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _colours(st: StatusView) -> dict[str, str]:
    models: list[str] = []
    for e in st["engines"]:
        if e["model"] not in models:
            models.append(e["model"])
    for w in st["workflows"]:
        for s in w["stages"]:
            models += [m for m in s["models"] if m not in models]
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(models)}


def _bar(value: float, scale: float, style: str) -> Text:
    n = 0 if scale <= 0 else round(min(value / scale, 1.0) * _BAR)
    return Text("█" * n + "·" * (_BAR - n), style=style)


def engines_table(engines: list[EngineView], colours: dict[str, str]) -> Table:
    t = Table(title="engines", title_justify="left", expand=True)
    for col in ("engine", "health", "running", "waiting", "in flight", "load", "KV"):
        t.add_column(col, justify="left" if col in ("engine", "health", "load") else "right")
    scale = max([8.0] + [e["running"] + e["waiting"] for e in engines])
    for e in engines:
        colour = colours.get(e["model"], "white")
        t.add_row(
            Text(e["id"], style=colour),
            Text("up", style="green") if e["healthy"] else Text("down", style="bold red"),
            f"{e['running']:.0f}",
            f"{e['waiting']:.0f}",
            str(e["inflight"]),
            _bar(e["running"] + e["waiting"], scale, colour),
            f"{e['kv_usage']:.0%}",
        )
    return t


def mix_bar(mix: dict[str, int], colours: dict[str, str]) -> Text:
    """A stacked bar of the models a stage ran on, with the shares spelled out."""
    n = sum(mix.values())
    if not n:
        return Text("-", style="dim")
    out = Text()
    for model, count in sorted(mix.items()):
        out.append("█" * max(1, round(_BAR * count / n)), style=colours.get(model, "white"))
    out.append("  " + " ".join(f"{m} {c / n:.0%}" for m, c in sorted(mix.items())))
    return out


def workflows_table(workflows: list[WorkflowView], colours: dict[str, str]) -> Table:
    t = Table(title="workflows: model mix per stage", title_justify="left", expand=True)
    t.add_column("workflow / stage")
    t.add_column("calls", justify="right")
    t.add_column("p50 / p95 call", justify="right")
    t.add_column("mean wait", justify="right")
    t.add_column("model mix")
    for w in workflows:
        errors = f" ({w['errors']} err)" if w["errors"] else ""
        t.add_row(
            Text(f"{w['name']} [{w['policy']}]", style="bold"),
            f"{w['calls']}{errors}",
            f"{_ms(w['latency_p50_s'])} / {_ms(w['latency_p95_s'])}",
            _ms(w["wait_mean_s"]),
            f"router fallbacks {w['router_fallbacks']}" if w["router_fallbacks"] else "",
        )
        if not w["calls"]:
            continue  # an idle workflow: its stages would only be rows of dashes
        for s in w["stages"]:
            t.add_row(
                f"  {s['name']}", str(sum(s["mix"].values())), "", "", mix_bar(s["mix"], colours)
            )
    return t


def render(st: StatusView, title: str = "Aragog", footer: str = "") -> RenderableType:
    colours = _colours(st)
    sched = st["scheduler"]
    head = Text.assemble(
        ("ready" if st["ready"] else "not ready", "bold green" if st["ready"] else "bold red"),
        f"  ·  snapshot {_ms(st['snapshot_age_s'])} old  ·  scheduler: {sched['queued']} "
        f"queued, {sched['rounds']} rounds, {sched['skipped']} skips, "
        f"{sched['rejected']} rejected",
    )
    parts: list[RenderableType] = [
        head,
        engines_table(st["engines"], colours),
        workflows_table(st["workflows"], colours),
    ]
    if footer:
        parts.append(Text(footer, style="dim"))
    return Panel(Group(*parts), title=title, border_style="blue")


def fetch(url: str, client: httpx.Client) -> StatusView:
    resp = client.get(url.rstrip("/") + "/status.json")
    resp.raise_for_status()
    return cast(StatusView, resp.json())


def watch(
    source: Callable[[], StatusView],
    stop: threading.Event,
    *,
    title: str = "Aragog",
    footer: Callable[[], str] = lambda: "",
    interval_s: float = 0.5,
    console: Console | None = None,
) -> StatusView | None:
    """Redraw from ``source`` every ``interval_s`` until ``stop`` is set; returns the last
    view drawn. A source that fails (gateway restarting) shows the error and is retried."""
    last: StatusView | None = None
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            done = stop.is_set()  # read first: the final frame must include the last calls
            try:
                last = source()
                live.update(render(last, title, footer()))
            except httpx.HTTPError as err:
                live.update(Text(f"{title}: status unavailable ({err})", style="red"))
            if done:
                return last
            stop.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aragog.dashboard", description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's base URL")
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args(argv)
    stop = threading.Event()
    with httpx.Client(timeout=5.0) as client:
        try:
            watch(
                lambda: fetch(args.url, client),
                stop,
                title=f"Aragog {args.url}",
                footer=lambda: f"{time.strftime('%H:%M:%S')}  Ctrl-C to quit",
                interval_s=args.interval,
            )
        except KeyboardInterrupt:
            stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
