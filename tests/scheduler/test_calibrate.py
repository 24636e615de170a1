"""Calibration against a fake engine whose batch holds four calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aragog.cli import build_parser
from aragog.config import parse_config
from aragog.scheduler.calibrate import Sweep, _plateaued, calibrate
from aragog.scheduler.capacity import profiles_for
from aragog.scheduler.curves import load_calibration, save_calibration


def batching_engine(slots: int, seconds: float) -> Starlette:
    sem = asyncio.Semaphore(slots)

    async def complete(request: Request) -> Response:
        body = await request.json()
        async with sem:
            await asyncio.sleep(seconds)
        return JSONResponse({"choices": [{"text": "x"}], "max_tokens": body["max_tokens"]})

    return Starlette(routes=[Route("/v1/completions", complete, methods=["POST"])])


async def test_sweep_finds_the_batch_size(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=batching_engine(4, 0.02))
    levels: list[int] = []
    async with httpx.AsyncClient(transport=transport) as client:
        cal = await calibrate(
            client,
            Sweep("http://engine", "m", seconds_per_level=0.2, tolerance=0.15),
            lambda level, _: levels.append(level),
        )
    # Real time on a shared CPU: the knee may land one level late, never early.
    assert cal.saturation in (4, 8)
    assert levels[:4] == [1, 2, 4, 8] and levels[-1] <= 32  # stops once growth stops
    rates = dict(cal.points)
    assert rates[4.0] > 2.5 * rates[1.0]
    path = tmp_path / "m.json"
    save_calibration(cal, path)
    cfg = parse_config(
        {
            "fleet": {"models": [{"name": "m", "cost": 1, "engines": [{"url": "http://e"}]}]},
            "scheduler": {"capacity": {"m": {"curve_file": str(path)}}},
        }
    )
    profile = profiles_for(cfg)["m@e"]
    assert profile.saturation == cal.saturation and profile.curve == load_calibration(path).curve()


def test_cli_parses_calibrate() -> None:
    args = build_parser().parse_args(
        ["calibrate", "--url", "http://x:1/", "--model", "m", "--out", "o.json"]
    )
    assert args.max_tokens == 16 and args.func.__name__ == "_calibrate"


@pytest.mark.parametrize(
    ("rates", "stop"),
    [
        ([10, 20, 40], False),
        ([10, 20, 40, 41], False),  # one flat level is noise
        ([10, 20, 40, 41, 40.5], True),
        ([10, 20, 20.5, 20.8], True),
        ([10, 10.1, 30], False),
    ],
)
def test_plateau_rule(rates: list[float], stop: bool) -> None:
    points = [(float(2**i), r) for i, r in enumerate(rates)]
    assert _plateaued(points, 0.05) is stop
