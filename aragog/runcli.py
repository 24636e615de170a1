"""``aragog run`` and ``aragog profile``: a workflow through a gateway, at a URL or in process.

Without ``--url`` the gateway is built in this process from ``--config`` (its poller
running, its engines reached over HTTP), so profiling needs no ``aragog serve`` of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from aragog.client import arun
from aragog.config import ConfigError
from aragog.router.progress import Progress

TIMEOUT_S = 600.0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("run", help="run one workflow request and print its answer and trace")
    r.add_argument("workflow")
    r.add_argument("--input", required=True, help="text, a JSON object, or @FILE")
    _gateway(r)
    r.add_argument("--json", action="store_true", help="print the whole result as JSON")
    r.set_defaults(func=_run)
    p = sub.add_parser(
        "profile",
        help="label a workflow's configurations on a labelled JSONL set (for router train)",
    )
    p.add_argument("workflow")
    p.add_argument("--data", type=Path, required=True, help='JSONL: {"id", "input", "expected"}')
    p.add_argument("--out", type=Path, required=True, help="labels file (.jsonl.gz)")
    _gateway(p)
    p.add_argument("--concurrency", type=int, default=4, help="inputs profiled at once")
    p.add_argument("--exhaustive", action="store_true", help="run every configuration")
    p.add_argument("--yes", action="store_true", help="start without asking")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_profile)


def _gateway(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="gateway config (specs, model costs)")
    p.add_argument("--url", help="a running gateway; default: one in this process")


@contextlib.asynccontextmanager
async def gateway_client(
    config: str, url: str | None, profiling: bool
) -> AsyncIterator[httpx.AsyncClient]:
    if url is not None:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=TIMEOUT_S) as c:
            yield c
        return
    from aragog.api.app import create_app
    from aragog.cli import load_all

    cfg, workflows = load_all(config)
    if profiling:
        cfg = cfg.model_copy(update={"profiling": True})
    app = create_app(cfg, workflows)
    async with app.router.lifespan_context(app):
        await app.state.gateway.poller.poll_once()  # engines known before the first call
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aragog") as c:
            yield c


def read_input(value: str) -> object:
    """``@FILE`` reads a file; text that parses as a JSON object is one; else plain text."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    if text.lstrip().startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):
            parsed: object = json.loads(text)
            return parsed
    return text


def _run(args: argparse.Namespace) -> int:
    async def go() -> httpx.Response:
        async with gateway_client(args.config, args.url, False) as c:
            return await arun(c, args.workflow, read_input(args.input))

    resp = asyncio.run(go())
    if resp.status_code != 200:
        print(f"error {resp.status_code}: {resp.text}", file=sys.stderr)
        return 1
    result = resp.json()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(result["answer"] if isinstance(result["answer"], str) else "\n".join(result["answer"]))
    print(
        f"\n{'stage':<12} {'model':<10} {'engine':<24} {'queue s':>8} {'latency s':>9} "
        f"{'tokens':>11}",
        file=sys.stderr,
    )
    for t in result["stages"]:
        tokens = f"{t['prompt_tokens']}+{t['completion_tokens']}"
        print(
            f"{t['stage']:<12} {t['model'] or '(skipped)':<10} {t['engine'] or '':<24} "
            f"{t['queue_wait_s']:8.3f} {t['latency_s']:9.3f} {tokens:>11}",
            file=sys.stderr,
        )
    print(f"total {result['latency_s']:.3f} s", file=sys.stderr)
    return 0


def _profile(args: argparse.Namespace) -> int:
    from aragog.profile import ProfileError

    try:
        return _profile_all(args)
    except ProfileError as err:
        print(f"profile: {err}", file=sys.stderr)
        return 2


def _profile_all(args: argparse.Namespace) -> int:
    from aragog.cli import load_all
    from aragog.profile import Profiler, estimate, pending, profile_to_file, read_examples

    cfg, workflows = load_all(args.config)
    spec = workflows.get(args.workflow)
    if spec is None:
        raise ConfigError(args.config, [f"workflows: no spec named {args.workflow!r}"])
    cost = {m.name: m.cost for m in cfg.fleet.models}
    examples = read_examples(args.data)
    est = estimate(spec, cost, pending(examples, args.out))
    print(est.describe(), file=sys.stderr)
    if not args.yes and sys.stdin.isatty() and input("start? [y/N] ").strip().lower() != "y":
        return 1
    bar = Progress(f"profile {spec.name}", est.max_runs, enabled=not args.quiet)

    async def go() -> None:
        async with gateway_client(args.config, args.url, True) as c:
            prof = Profiler(c, spec, cost, args.concurrency, args.exhaustive, lambda: bar.update(1))
            labels = await profile_to_file(prof, examples, args.out)
        ran = sum(1 for _ in labels.rows)
        print(f"\n{args.out}: {ran} inputs, {len(prof.configs)} configurations", file=sys.stderr)

    asyncio.run(go())
    return 0
