"""``aragog calibrate``: sweep concurrency against a live OpenAI-compatible engine and find
where throughput stops growing.

At each level c, c workers send completions back to back (small ``max_tokens`` keeps the
sweep short and the curve in calls/s of a known size) for a fixed time; throughput is
completed calls over elapsed time. Levels double until throughput has not grown by more
than the knee tolerance for two levels, or the cap is reached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from aragog.scheduler.curves import Calibration, knee


@dataclass(frozen=True, slots=True)
class Sweep:
    url: str
    model: str
    max_tokens: int = 16
    max_concurrency: int = 64
    seconds_per_level: float = 3.0
    tolerance: float = 0.05
    api_key: str | None = None
    prompt: str = "Count slowly from one to one hundred."


async def _worker(
    client: httpx.AsyncClient, sweep: Sweep, until: float, clock: Callable[[], float]
) -> int:
    body = {
        "model": sweep.model,
        "prompt": sweep.prompt,
        "max_tokens": sweep.max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,  # vLLM extension: every call generates exactly max_tokens
    }
    headers = {"Authorization": f"Bearer {sweep.api_key}"} if sweep.api_key else None
    done = 0
    while clock() < until:
        resp = await client.post(f"{sweep.url}/v1/completions", json=body, headers=headers)
        resp.raise_for_status()
        done += 1
    return done


async def measure(
    client: httpx.AsyncClient,
    sweep: Sweep,
    concurrency: int,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Calls per second at ``concurrency`` calls in flight."""
    started = clock()
    until = started + sweep.seconds_per_level
    counts = await asyncio.gather(
        *(_worker(client, sweep, until, clock) for _ in range(concurrency))
    )
    return sum(counts) / (clock() - started)


def _plateaued(points: list[tuple[float, float]], tolerance: float) -> bool:
    """The last two levels added less than ``tolerance`` over the best before them."""
    if len(points) < 3:
        return False
    before = max(y for _, y in points[:-2])
    return all(y < (1 + tolerance) * before for _, y in points[-2:])


async def calibrate(
    client: httpx.AsyncClient,
    sweep: Sweep,
    progress: Callable[[int, float], None] | None = None,
) -> Calibration:
    points: list[tuple[float, float]] = []
    level = 1
    while level <= sweep.max_concurrency:
        rate = await measure(client, sweep, level)
        points.append((float(level), rate))
        if progress is not None:
            progress(level, rate)
        if _plateaued(points, sweep.tolerance):
            break
        level *= 2
    return Calibration(
        model=sweep.model,
        saturation=knee(points, sweep.tolerance),
        points=tuple(points),
        max_tokens=sweep.max_tokens,
        url=sweep.url,
    )
