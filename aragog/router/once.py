"""Route each request once: the first call of a request starts ``Router.route``; every later
(or concurrent) call of the same request awaits the same result. Bounded, oldest evicted."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from aragog.router.service import Router, RouteResult


class OncePerRequest:
    def __init__(self, max_requests: int = 100_000) -> None:
        self._tasks: OrderedDict[tuple[str, str], asyncio.Task[RouteResult]] = OrderedDict()
        self._max = max_requests

    def start(
        self,
        router: Router,
        request_id: str,
        text: str,
        on_result: Callable[[RouteResult], None] | None = None,
    ) -> asyncio.Task[RouteResult]:
        """The routing task of this request, created on its first call; not awaited here, so
        routing overlaps the call's first queueing delay. ``on_result`` runs once per
        request however many calls share the task (metrics count requests, not calls)."""
        key = (router.workflow, request_id)
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.create_task(router.route(text))
            if on_result is not None:
                task.add_done_callback(
                    lambda t: None if t.cancelled() or t.exception() else on_result(t.result())
                )
            self._tasks[key] = task
            while len(self._tasks) > self._max:
                self._tasks.popitem(last=False)
        return task

    def forget(self, workflow: str, request_id: str) -> None:
        self._tasks.pop((workflow, request_id), None)

    def __len__(self) -> int:
        return len(self._tasks)
