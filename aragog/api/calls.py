"""One OpenAI call through the gateway: validate, identify, place, forward, account."""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio
import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aragog.api.errors import ApiError, bad_request, not_found, unavailable
from aragog.api.gateway import Gateway
from aragog.api.tagging import Tags, extract_tags
from aragog.fleet.load import least_loaded
from aragog.fleet.snapshot import EngineRef
from aragog.proxy import UpstreamError, Usage, relay_sse, send, usage_from
from aragog.scheduler.base import Dispatch, NoCapacity, StageCall
from aragog.scheduler.jit import QueueFull
from aragog.state import RequestState

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    required: str  # the body field without which the call is meaningless
    streams: bool


CHAT = Endpoint("/v1/chat/completions", "messages", True)
COMPLETIONS = Endpoint("/v1/completions", "prompt", True)
EMBEDDINGS = Endpoint("/v1/embeddings", "input", False)


@dataclass(slots=True)
class Placement:
    """Where a call goes and what to release when it ends."""

    model: str
    engine: EngineRef
    tags: Tags
    dispatch: Dispatch | None  # None for plain calls
    waited_s: float = 0.0  # time the workflow policy held the call


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body exceeds {limit} bytes", "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes", "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(raw: bytes, ep: Endpoint) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"request body is not valid JSON: {err}", "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", "invalid_json")
    value = body.get(ep.required)
    if value is None or value == [] or value == "":
        raise bad_request(f"missing required field '{ep.required}'", param=ep.required)
    if ep.required == "messages" and not isinstance(value, list):
        raise bad_request("'messages' must be an array", param="messages")
    if "model" in body and not isinstance(body["model"], str):
        raise bad_request("'model' must be a string", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", param="stream")
    if stream and not ep.streams:
        raise bad_request(f"{ep.path} does not stream", param="stream")
    return body


async def place(gw: Gateway, body: dict[str, Any], tags: Tags) -> Placement:
    if tags.workflow is None:
        if tags.stage is not None or tags.request_id is not None:
            raise bad_request("a stage or request id was given without a workflow")
        return _place_plain(gw, body.get("model"), tags)
    spec = gw.workflows.get(tags.workflow)
    if spec is None:
        raise not_found(f"unknown workflow {tags.workflow!r}", "workflow_not_found")
    stage = tags.stage
    if stage is None:
        raise bad_request(
            f"workflow {spec.name!r} call without a stage (X-Aragog-Stage)", "stage_required"
        )
    if spec.stage(stage) is None:
        raise not_found(
            f"workflow {spec.name!r} has no stage {stage!r} "
            f"(stages: {', '.join(spec.stage_names)})",
            "stage_not_found",
        )
    if tags.request_id is None:  # one call, one request; the id comes back in a header
        tags = Tags(tags.workflow, uuid.uuid4().hex, tags.stage)
    assert tags.request_id is not None
    arrival = time.time()

    def touch(s: RequestState | None) -> RequestState:
        return s or RequestState(spec.name, tags.request_id or "", arrival)

    state = await gw.store.update(spec.name, tags.request_id, touch)
    if state.viable is None and spec.name in gw.routers:
        viable = await gw.viable_set(spec, tags.request_id, routing_text(body))
        state = await gw.store.update(
            spec.name,
            tags.request_id,
            lambda s: s if s and s.viable is not None else replace(touch(s), viable=viable),
        )
    policy = gw.policies[spec.name]
    waited = time.perf_counter()
    try:
        dispatch = await policy.acquire(StageCall(spec, stage, state))
    except NoCapacity as err:
        raise unavailable(str(err)) from None
    except QueueFull as err:
        retry = str(max(1, math.ceil(err.retry_after_s)))
        raise ApiError(
            429, str(err), "queue_full", "rate_limit_error", headers={"Retry-After": retry}
        ) from None
    waited = time.perf_counter() - waited
    gw.metrics.queue_wait.labels(spec.name).observe(waited)
    try:
        await gw.store.update(
            spec.name, tags.request_id, lambda s: touch(s).with_choice(stage, dispatch.model)
        )
    except BaseException:  # cancelled or store down: the lease must not leak
        policy.release(dispatch)
        raise
    return Placement(dispatch.model, dispatch.engine, tags, dispatch, waited)


def routing_text(body: dict[str, Any]) -> str:
    """What the router reads: the text of the request's first call (messages or prompt)."""
    parts: list[str] = []
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    elif isinstance(prompt, list):
        parts += [p for p in prompt if isinstance(p, str)]
    return "\n".join(parts)


def _place_plain(gw: Gateway, model: object, tags: Tags) -> Placement:
    if not isinstance(model, str) or not model:
        raise bad_request("missing required field 'model'", param="model")
    if model not in gw.cost:
        raise not_found(
            f"the model {model!r} does not exist in this fleet (see /v1/models)",
            "model_not_found",
            param="model",
        )
    engine = least_loaded(gw.poller.snapshot.of_model(model), gw.inflight)
    if engine is None:
        raise unavailable(f"no healthy engine serves {model!r}")
    return Placement(model, engine.ref, tags, None)


class RelayResponse(StreamingResponse):
    """Streams while watching for the client going away, whatever ASGI spec the server
    speaks. On disconnect the stream is cancelled and the relay closed, which closes the
    upstream request so the engine stops generating and frees its slot."""

    def __init__(self, relay: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
        super().__init__(relay, media_type="text/event-stream", headers=headers)
        self._relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def stream() -> None:
                    with contextlib.suppress(OSError):
                        await self.stream_response(send)
                    tg.cancel_scope.cancel()

                tg.start_soon(stream)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            # The relay may be parked at a yield (cancelled inside send): close it now
            # rather than whenever the garbage collector finalises it.
            with anyio.CancelScope(shield=True):
                await self._relay.aclose()


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client disconnects first (then raise ClientGone).

    The body has been read, so the next ASGI message can only be the disconnect; cancelling
    ``work`` there stops a queued call or closes the upstream request, freeing the engine.
    """
    done: list[T] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            try:
                done.append(await work)
            except Exception as err:  # raised below as itself, not in an ExceptionGroup
                failed.append(err)
            tg.cancel_scope.cancel()

        tg.start_soon(run)
        while (await request.receive())["type"] != "http.disconnect":
            pass
        tg.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if not done:
        raise ClientGone
    return done[0]


async def handle(gw: Gateway, request: Request, ep: Endpoint) -> Response:
    started = time.perf_counter()
    body = parse_body(await read_body(request, gw.cfg.limits.max_body_bytes), ep)
    tags = extract_tags(request.headers, body)
    try:
        return await until_disconnect(request, _serve(gw, ep, body, tags, started))
    except ClientGone:
        return Response(status_code=499)  # nobody is listening; keeps the access log honest


async def _serve(
    gw: Gateway, ep: Endpoint, body: dict[str, Any], tags: Tags, started: float
) -> Response:
    placed = await place(gw, body, tags)
    body["model"] = placed.engine.served_model_name
    stream = bool(body.get("stream"))
    strip_usage = False
    if stream:
        opts = body.get("stream_options")
        if not isinstance(opts, dict) or not opts.get("include_usage"):
            body["stream_options"] = {
                **(opts if isinstance(opts, dict) else {}),
                "include_usage": True,
            }
            strip_usage = True
    call = CallRecord(gw, placed, started)
    call.start()
    # Queueing in the policy is not gateway overhead; count only our own work.
    gw.metrics.overhead.observe(time.perf_counter() - started - placed.waited_s)
    try:
        upstream = await send(gw.client, placed.engine, ep.path, orjson.dumps(body), stream)
    except UpstreamError as err:
        await call.finish(504 if err.timeout else 502)
        code = "upstream_timeout" if err.timeout else "upstream_unavailable"
        raise ApiError(504 if err.timeout else 502, str(err), code, "upstream_error") from None
    except BaseException:
        await call.finish_shielded(499)
        raise
    if not stream or upstream.status_code != 200:
        return await _whole(call, upstream)
    return RelayResponse(_relay(call, upstream, strip_usage), call.headers())


async def _whole(call: CallRecord, upstream: httpx.Response) -> Response:
    try:
        content = await upstream.aread()
    except httpx.HTTPError as err:
        await upstream.aclose()
        await call.finish(502)
        raise ApiError(
            502,
            f"engine failed mid-response ({type(err).__name__})",
            "upstream_unavailable",
            "upstream_error",
        ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
        await call.finish_shielded(499)
        raise
    if upstream.status_code == 200:
        with contextlib.suppress(orjson.JSONDecodeError):
            call.usage = usage_from(orjson.loads(content))
    await call.finish(upstream.status_code)
    media = upstream.headers.get("content-type", "application/json")
    return Response(
        content, status_code=upstream.status_code, media_type=media, headers=call.headers()
    )


_MID_STREAM_ERROR = orjson.dumps(
    {
        "error": {
            "message": "engine failed mid-stream",
            "type": "upstream_error",
            "code": "upstream_unavailable",
        }
    }
)


async def _relay(
    call: CallRecord, upstream: httpx.Response, strip_usage: bool
) -> AsyncGenerator[bytes, None]:
    status = 499  # unless the stream runs to its end, the client went away
    try:
        async for data in relay_sse(upstream, strip_usage, call.first_token, call.set_usage):
            yield data
        status = 200
    except httpx.HTTPError:
        status = 502
        yield b"data: " + _MID_STREAM_ERROR + b"\n\n"
    finally:
        # Cancellation is level-triggered under anyio: without the shield these awaits
        # would be cancelled too and the engine's slot would leak.
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
        await call.finish_shielded(status)


class CallRecord:
    """Accounting of one forwarded call; ``finish`` runs exactly once, whatever happens."""

    def __init__(self, gw: Gateway, placed: Placement, started: float) -> None:
        self.gw = gw
        self.placed = placed
        self.started = started
        self.usage: Usage | None = None
        self._finished = False

    def start(self) -> None:
        eid, model = self.placed.engine.engine_id, self.placed.model
        self.gw.inflight.acquire(eid)
        self.gw.metrics.inflight.labels(eid, model).set(self.gw.inflight.get(eid))

    def headers(self) -> dict[str, str]:
        h = {"x-aragog-model": self.placed.model, "x-aragog-engine": self.placed.engine.engine_id}
        if self.placed.tags.request_id is not None:
            h["x-aragog-request-id"] = self.placed.tags.request_id
        return h

    def set_usage(self, usage: Usage) -> None:
        self.usage = usage

    def first_token(self) -> None:
        wf = self.placed.tags.workflow or ""
        self.gw.metrics.ttft.labels(wf, self.placed.model).observe(
            time.perf_counter() - self.started
        )

    async def finish_shielded(self, status: int) -> None:
        """``finish`` from a cancelled task: anyio cancellation is level-triggered, so
        unshielded awaits would be cancelled too and the engine's slot would leak."""
        with anyio.CancelScope(shield=True):
            await self.finish(status)

    async def finish(self, status: int) -> None:
        if self._finished:
            return
        self._finished = True
        gw, p = self.gw, self.placed
        gw.inflight.release(p.engine.engine_id)
        gw.metrics.inflight.labels(p.engine.engine_id, p.model).set(
            gw.inflight.get(p.engine.engine_id)
        )
        wf, stage = p.tags.workflow or "", p.tags.stage or ""
        gw.metrics.requests.labels(wf, stage, p.model, str(status)).inc()
        gw.metrics.latency.labels(wf, p.model).observe(time.perf_counter() - self.started)
        if self.usage is not None:
            gw.metrics.tokens.labels(p.model, "prompt").inc(self.usage.prompt_tokens)
            gw.metrics.tokens.labels(p.model, "completion").inc(self.usage.completion_tokens)
        if p.dispatch is not None:
            gw.policies[wf].release(p.dispatch)
            rid, model = p.tags.request_id, p.model
            if status == 200 and rid is not None:
                await gw.store.update(
                    wf,
                    rid,
                    lambda s: (s or RequestState(wf, rid, time.time())).with_done(stage, model),
                )
