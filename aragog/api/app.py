"""The ASGI app: routes, error mapping and the lifespan that owns the poller and client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import httpx
import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from aragog.api import calls, runs, status
from aragog.api.auth import AuthMiddleware
from aragog.api.errors import ApiError, error_response
from aragog.api.gateway import Gateway
from aragog.config import GatewayConfig
from aragog.proxy import FastUpstream, HttpxUpstream, make_client
from aragog.state import RequestStore
from aragog.workflow.executor import Executor
from aragog.workflow.spec import WorkflowSpec


def _json(obj: object, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def create_app(
    cfg: GatewayConfig,
    workflows: Mapping[str, WorkflowSpec],
    *,
    client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.monotonic,
    store: RequestStore | None = None,
    poll: bool = True,
) -> FastAPI:
    """Build a gateway app. ``client`` is the seam for tests (an httpx transport); ``poll``
    off leaves snapshots to the caller (``gateway.poller.poll_once()``)."""
    own_client = client is None
    http = client or make_client(cfg.upstream, sum(len(m.engines) for m in cfg.fleet.models))
    # The engines' hot path goes through the lean HTTP/1.1 client unless a test hands in its
    # own httpx client (in-process fake engines).
    upstream = FastUpstream(cfg.upstream, HttpxUpstream(http, cfg.upstream)) if own_client else None
    gw = Gateway(cfg, workflows, http, clock, store, upstream)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(gw.poller.run()) if poll else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if own_client:
                await http.aclose()
            await self_client.aclose()
            await gw.aclose()

    app = FastAPI(title="Aragog", lifespan=lifespan, docs_url=None, redoc_url=None)
    if cfg.auth.keys:  # an open gateway pays nothing for auth
        app.add_middleware(AuthMiddleware, cfg=cfg.auth, metrics=gw.metrics, clock=clock)
    app.state.gateway = gw
    # Workflow runs call this very app in process, so every stage takes the same path as a
    # user's tagged call (tagging, router, scheduler, accounting).
    self_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://aragog.internal", timeout=None
    )
    _routes(app, gw, Executor(self_client))
    _errors(app)
    return app


def _endpoint(gw: Gateway, ep: calls.Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await calls.handle(gw, request, ep)

    return endpoint


def _routes(app: FastAPI, gw: Gateway, executor: Executor) -> None:
    @app.post("/v1/workflows/{name}/runs")
    async def run_workflow(request: Request, name: str) -> Response:
        return await runs.handle_run(gw, executor, request, name)

    # The OpenAI routes are plain Starlette routes: they read the raw request themselves,
    # so FastAPI's per-call dependency solving would be pure overhead on the hot path.
    for ep in (calls.CHAT, calls.COMPLETIONS, calls.EMBEDDINGS):
        app.router.add_route(ep.path, _endpoint(gw, ep), methods=["POST"])

    @app.get("/v1/models")
    async def models() -> Response:
        data = [
            {"id": m.name, "object": "model", "created": 0, "owned_by": "aragog"}
            for m in gw.cfg.fleet.models
        ]
        return _json({"object": "list", "data": data})

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        ok, problems = gw.readiness()
        return _json({"ready": ok, "problems": problems}, 200 if ok else 503)

    @app.get("/status")
    async def status_page() -> Response:
        return Response(status.PAGE, media_type="text/html; charset=utf-8")

    @app.get("/status.json")
    async def status_json() -> Response:
        return _json(status.collect(gw))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gw.metrics.exposition(), media_type="text/plain; version=0.0.4")


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, str(exc.detail), code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: Exception) -> Response:
        return error_response(400, str(exc), "invalid_request")
