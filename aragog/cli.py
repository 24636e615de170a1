"""``aragog`` command line: ``serve``, ``check``, ``calibrate``, ``router train|eval``, ``run``,
``profile``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aragog import runcli
from aragog.config import ConfigError, GatewayConfig, load_config
from aragog.router import cli as router_cli
from aragog.workflow.spec import WorkflowSpec, load_workflows

if TYPE_CHECKING:
    from fastapi import FastAPI


def load_all(path: str) -> tuple[GatewayConfig, dict[str, WorkflowSpec]]:
    """Config plus its workflows, cross-checked: raises ConfigError naming every problem."""
    cfg = load_config(path)
    cost = {m.name: m.cost for m in cfg.fleet.models}
    workflows = load_workflows(cfg.workflows_dir, cost) if cfg.workflows_dir else {}
    unknown = [
        f"workflows[{name}]: no spec named {name!r} in {cfg.workflows_dir}"
        for name in cfg.workflows
        if name not in workflows
    ]
    if unknown:
        raise ConfigError(path, unknown)
    return cfg, workflows


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from aragog.api.app import create_app

    cfg, workflows = load_all(args.config)
    workers = args.workers or cfg.server.workers
    if workers > 1 and cfg.store.backend == "memory":
        raise ConfigError(
            args.config, ["--workers: more than one worker needs store.backend: redis"]
        )
    # Several workers each build the app from the config (uvicorn imports a factory), with
    # their own poller and scheduler; request state is shared through the store.
    os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    uvicorn.run(
        "aragog.cli:app_from_env" if workers > 1 else create_app(cfg, workflows),
        factory=workers > 1,
        workers=workers,
        host=args.host or cfg.server.host,
        port=args.port if args.port is not None else cfg.server.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        log_level=args.log_level,
        access_log=False,  # per-call logging costs more than the gateway itself
    )
    return 0


CONFIG_ENV = "ARAGOG_CONFIG"


def app_from_env() -> FastAPI:
    """The app of one worker process, from the config ``aragog serve`` named."""
    from aragog.api.app import create_app

    return create_app(*load_all(os.environ[CONFIG_ENV]))


def _check(args: argparse.Namespace) -> int:
    cfg, workflows = load_all(args.config)
    engines = sum(len(m.engines) for m in cfg.fleet.models)
    print(f"ok: {len(cfg.fleet.models)} models, {engines} engines, {len(workflows)} workflows")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import asyncio

    import httpx

    from aragog.scheduler.calibrate import Sweep, calibrate
    from aragog.scheduler.curves import save_calibration

    sweep = Sweep(
        url=args.url.rstrip("/"),
        model=args.model,
        max_tokens=args.max_tokens,
        max_concurrency=args.max_concurrency,
        seconds_per_level=args.seconds,
        api_key=args.api_key,
    )

    def show(level: int, rate: float) -> None:
        print(f"concurrency {level:>4}: {rate:8.2f} calls/s", flush=True)

    async def run() -> None:
        limits = httpx.Limits(max_connections=args.max_concurrency)
        async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:
            cal = await calibrate(client, sweep, show)
        save_calibration(cal, args.out)
        print(f"saturation {cal.saturation}; wrote {args.out}")

    asyncio.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aragog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="gateway YAML config")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="gateway processes (default: config)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check", help="validate a config and its workflows, then exit")
    check.add_argument("--config", required=True)
    check.set_defaults(func=_check)
    cal = sub.add_parser(
        "calibrate",
        help="measure an engine's throughput-load curve and saturation point",
        description="Sweeps concurrency against a live engine; reference the output file "
        "from the config as scheduler.capacity.MODEL.curve_file.",
    )
    cal.add_argument("--url", required=True, help="engine base URL, e.g. http://127.0.0.1:8101")
    cal.add_argument("--model", required=True, help="served model name")
    cal.add_argument("--out", required=True, help="output file (.json, or .yaml)")
    cal.add_argument("--max-tokens", type=int, default=16)
    cal.add_argument("--max-concurrency", type=int, default=64)
    cal.add_argument("--seconds", type=float, default=3.0, help="measuring time per level")
    cal.add_argument("--timeout", type=float, default=120.0, help="per-call timeout")
    cal.add_argument("--api-key")
    cal.set_defaults(func=_calibrate)
    router_cli.register(sub)
    runcli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request at INFO: that is 10 lines a second per engine from the poller.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        rc: int = args.func(args)
    except ConfigError as err:
        print(f"configuration error in {err}", file=sys.stderr)
        return 2
    return rc
