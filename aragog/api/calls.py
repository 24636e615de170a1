"""One OpenAI call through the gateway: validate, identify, place, forward, account."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aragog.api.errors import ApiError, bad_request, error_response, not_found, unavailable
from aragog.api.gateway import Gateway
from aragog.api.tagging import Tags, extract_tags
from aragog.fleet.health import Outcome
from aragog.fleet.load import least_loaded
from aragog.fleet.snapshot import EngineRef
from aragog.proxy import (
    UpstreamError,
    UpstreamResponse,
    Usage,
    classify,
    relay_sse,
    send,
    usage_from,
)
from aragog.retry import RETRYABLE_STATUS, Attempt, Failure, should_retry
from aragog.scheduler.base import Dispatch, NoCapacity, Policy, StageCall
from aragog.scheduler.jit import QueueFull
from aragog.state import RequestState
from aragog.workflow import forced as forcing
from aragog.workflow.spec import Configuration, WorkflowSpec

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


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object, or the OpenAI-style 400 saying why."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"request body is not valid JSON: {err}", "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", "invalid_json")
    return body


def parse_body(raw: bytes, ep: Endpoint) -> dict[str, Any]:
    body = json_object(raw)
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


_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def cap_tokens(body: dict[str, Any], ceiling: int | None) -> None:
    """Hold generation length to the gateway's ceiling: above it is a 400 (silently
    truncating would surprise the caller); absent, the ceiling becomes the default."""
    if ceiling is None:
        return
    given = False
    for key in _TOKEN_FIELDS:
        value = body.get(key)
        if value is None:
            continue
        given = True
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(f"'{key}' must be a positive integer", param=key)
        if value > ceiling:
            raise bad_request(
                f"'{key}' is {value}, above this gateway's ceiling of {ceiling}",
                "max_tokens_exceeded",
                param=key,
            )
    if not given:
        body["max_tokens"] = ceiling


async def place(
    gw: Gateway,
    body: dict[str, Any],
    tags: Tags,
    force: str | None = None,
    avoid: tuple[str, ...] = (),
) -> Placement:
    """Choose model and engine. ``avoid``: engines this call already failed on (a retry);
    plain calls skip them when another replica is healthy, workflow policies see failed
    engines through their breakers."""
    if tags.workflow is None:
        if tags.stage is not None or tags.request_id is not None or force is not None:
            raise bad_request("a stage, request id or configuration was given without a workflow")
        return _place_plain(gw, body.get("model"), tags, avoid)
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
    config = _forced(gw, spec, force)
    want = None if config is None else config[spec.stage_names.index(stage)]
    arrival = time.time()

    def touch(s: RequestState | None) -> RequestState:
        return s or RequestState(spec.name, tags.request_id or "", arrival)

    state = await gw.store.update(spec.name, tags.request_id, touch)
    if config is not None:  # profiling: C(r) is the configuration named; nothing to route
        state = await gw.store.update(
            spec.name, tags.request_id, lambda s: replace(touch(s), viable=frozenset({config}))
        )
        # The stage bound up front, so policies that ignore C(r) (largest) keep it too.
        state = replace(state, chosen=MappingProxyType({**state.chosen, stage: want or ""}))
    elif state.viable is None and spec.name in gw.routers:
        viable = await gw.viable_set(spec, tags.request_id, routing_text(body))
        state = await gw.store.update(
            spec.name,
            tags.request_id,
            lambda s: s if s and s.viable is not None else replace(touch(s), viable=viable),
        )
    policy = gw.policies[spec.name]
    waited = time.perf_counter()
    for _ in range(_MAX_CONFLICTS):
        dispatch = await _acquire(policy, StageCall(spec, stage, state))
        if want is not None and dispatch.model != want:
            policy.release(dispatch)
            raise unavailable(f"no healthy engine for the forced model {want!r}")
        conflict: list[RequestState] = []

        def choose(
            s: RequestState | None, d: Dispatch = dispatch, seen: list[RequestState] = conflict
        ) -> RequestState:
            s = touch(s)
            seen.clear()  # a shared store may run this more than once (optimistic retry)
            if gw.conflicts(spec, s, stage, d.model, retry=bool(avoid)):
                seen.append(s)
                return s
            return s.with_choice(stage, d.model)

        try:
            state = await gw.store.update(spec.name, tags.request_id, choose)
        except BaseException:  # cancelled or store down: the lease must not leak
            policy.release(dispatch)
            raise
        if not conflict:
            break
        # Another replica fixed this stage (or narrowed C(r)) while we placed: its choice
        # is already stored, so ours must yield. Place again under the stored state.
        policy.release(dispatch)
        gw.metrics.state_conflicts.labels(spec.name).inc()
        state = conflict[0]
    else:
        raise unavailable(f"request {tags.request_id!r}: replicas keep disagreeing; retry")
    waited = time.perf_counter() - waited
    gw.metrics.queue_wait.labels(spec.name).observe(waited)
    return Placement(dispatch.model, dispatch.engine, tags, dispatch, waited)


_MAX_CONFLICTS = 3


async def _acquire(policy: Policy, call: StageCall) -> Dispatch:
    try:
        return await policy.acquire(call)
    except NoCapacity as err:
        raise unavailable(str(err)) from None
    except QueueFull as err:
        retry = str(max(1, math.ceil(err.retry_after_s)))
        raise ApiError(
            429, str(err), "queue_full", "rate_limit_error", headers={"Retry-After": retry}
        ) from None


def _forced(gw: Gateway, spec: WorkflowSpec, header: str | None) -> Configuration | None:
    """The configuration an X-Aragog-Configuration header forces (profiling gateways)."""
    if header is None:
        return None
    if not gw.cfg.profiling:
        raise ApiError(
            403,
            f"{forcing.HEADER} is accepted only when the gateway runs with profiling: true",
            "profiling_disabled",
            "permission_error",
        )
    try:
        return forcing.parse(header, spec)
    except ValueError as err:
        raise bad_request(str(err), "invalid_configuration") from None


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


def _place_plain(gw: Gateway, model: object, tags: Tags, avoid: tuple[str, ...]) -> Placement:
    if not isinstance(model, str) or not model:
        raise bad_request("missing required field 'model'", param="model")
    if model not in gw.cost:
        raise not_found(
            f"the model {model!r} does not exist in this fleet (see /v1/models)",
            "model_not_found",
            param="model",
        )
    replicas = gw.fleet().of_model(model)
    if avoid:  # a retry: another replica if one is up, else the same one again
        others = [e for e in replicas if e.ref.engine_id not in avoid]
        replicas = others if any(e.healthy for e in others) else replicas
    engine = least_loaded(replicas, gw.inflight)
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
    ``work`` runs in this task under an anyio scope (so its shielded clean-ups hold) and a
    small watcher task cancels that scope: cheaper than a task group on every call.
    """
    with anyio.CancelScope() as scope:
        watcher = asyncio.get_running_loop().create_task(_watch(request, scope))
        try:
            return await work
        finally:
            watcher.cancel()
    raise ClientGone


async def _watch(request: Request, scope: anyio.CancelScope) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def handle(gw: Gateway, request: Request, ep: Endpoint) -> Response:
    started = time.perf_counter()
    body = parse_body(await read_body(request, gw.cfg.limits.max_body_bytes), ep)
    if ep.streams:  # generation endpoints; embeddings have no tokens to cap
        cap_tokens(body, gw.cfg.limits.max_tokens)
    tags = extract_tags(request.headers, body)
    force = request.headers.get(forcing.HEADER)
    try:
        return await until_disconnect(request, _serve(gw, ep, body, tags, started, force))
    except ClientGone:
        return Response(status_code=499)  # nobody is listening; keeps the access log honest


async def _serve(
    gw: Gateway,
    ep: Endpoint,
    body: dict[str, Any],
    tags: Tags,
    started: float,
    force: str | None = None,
) -> Response:
    stream = bool(body.get("stream"))
    strip_usage = stream and _ask_for_usage(body)
    up = gw.cfg.upstream
    deadline = started + up.total_timeout_s
    avoid: tuple[str, ...] = ()  # engines this call already failed on
    attempt = 0
    failed: _Failed | None = None
    requested = body.get("model")  # each try rewrites it to its engine's served name
    while True:
        attempt += 1
        if attempt > 1:
            body["model"] = requested
        try:
            placed = await place(gw, body, tags, force, avoid)
        except ApiError as err:
            if failed is None or err.status != 503:
                raise
            return failed.response()  # nowhere left to retry: the engine's failure explains
        tags = placed.tags  # a generated request id stays the same across tries
        body["model"] = placed.engine.served_model_name
        call = CallRecord(gw, placed, started)
        call.start()
        if attempt == 1:  # queueing in the policy is not gateway overhead
            gw.metrics.overhead.observe(time.perf_counter() - started - placed.waited_s)
        try:
            return await _try(gw, call, ep.path, orjson.dumps(body), stream, strip_usage, deadline)
        except _Failed as err:
            failed = err
            eid = placed.engine.engine_id
            gw.breakers.record(eid, _OUTCOME[failed.failure])
            gw.metrics.upstream_failures.labels(eid, failed.failure.value).inc()
            await call.finish(failed.status)
            retry = Attempt(attempt, failed.failure, False, time.perf_counter(), deadline)
            if not should_retry(retry, up.max_attempts):
                return failed.response()
            gw.metrics.retries.labels(failed.failure.value).inc()
            avoid += (eid,)


def _ask_for_usage(body: dict[str, Any]) -> bool:
    """Ask a streamed call for its usage (for accounting); True when the client did not
    ask, so the usage chunk is dropped on the way back."""
    opts = body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage"):
        return False
    body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    return True


_OUTCOME = {
    Failure.REFUSED: Outcome.REFUSED,
    Failure.TIMEOUT: Outcome.FAILURE,
    Failure.BROKEN: Outcome.FAILURE,
    Failure.OVERLOADED: Outcome.FAILURE,
    Failure.ABORTED: Outcome.FAILURE,
}


class _Failed(Exception):
    """A try that failed before anything reached the client (so it may be retried)."""

    def __init__(self, failure: Failure, message: str, answer: Response | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.answer = answer  # the engine's own 5xx, passed through when no retry is left

    @property
    def status(self) -> int:
        if self.answer is not None:
            return self.answer.status_code
        return 504 if self.failure is Failure.TIMEOUT else 502

    def response(self) -> Response:
        if self.answer is not None:
            return self.answer
        code = "upstream_timeout" if self.failure is Failure.TIMEOUT else "upstream_unavailable"
        return error_response(self.status, self.message, code, "upstream_error")


async def _try(
    gw: Gateway,
    call: CallRecord,
    path: str,
    payload: bytes,
    stream: bool,
    strip_usage: bool,
    deadline: float,
) -> Response:
    """One try on one engine, abortable by the engine's breaker opening; returns the answer
    (for a stream: once its first event is in hand) or raises ``_Failed``."""
    engine = call.placed.engine
    abort = anyio.CancelScope()
    aborts = gw.aborts.setdefault(engine.engine_id, set())
    aborts.add(abort)
    upstream: UpstreamResponse | None = None
    up = gw.cfg.upstream
    try:
        with abort:
            # Until the first byte (for a whole answer: all of it) one timer covers connect,
            # headers and body; httpx's own timeouts bound each read below it.
            left = deadline - time.perf_counter()
            wait = max(0.0, min(up.first_byte_timeout_s if stream else up.read_timeout_s, left))
            try:
                with anyio.fail_after(wait):
                    upstream = await _send(gw, engine, path, payload, stream)
                    if not stream or upstream.status_code != 200:
                        return await _whole(call, upstream)
                    events = relay_sse(upstream, strip_usage, call.first_token, call.set_usage)
                    first = await _first_event(events, engine.engine_id)
            except TimeoutError:
                msg = f"engine {engine.engine_id}: no first byte in {wait:.1f}s"
                raise _Failed(Failure.TIMEOUT, msg) from None
            gw.breakers.record(engine.engine_id, Outcome.SUCCESS)
            relay = _relay(gw, call, upstream, first, events, deadline)
            upstream = None  # the relay owns it now
            return RelayResponse(relay, call.headers())
        raise _Failed(Failure.ABORTED, f"engine {engine.engine_id} was taken out of service")
    except BaseException as err:
        if upstream is not None:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
        if not isinstance(err, _Failed):  # the caller accounts for failed tries
            # Not an Exception: cancelled, so the client went away.
            await call.finish_shielded(500 if isinstance(err, Exception) else 499)
        raise
    finally:
        aborts.discard(abort)


async def _send(
    gw: Gateway, engine: EngineRef, path: str, payload: bytes, stream: bool
) -> UpstreamResponse:
    try:
        return await send(gw.upstream, engine, path, payload, stream)
    except UpstreamError as err:
        raise _Failed(err.failure, str(err)) from None


async def _first_event(events: AsyncGenerator[bytes, None], engine_id: str) -> bytes:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        raise _Failed(Failure.BROKEN, f"engine {engine_id} ended the stream empty") from None
    except httpx.HTTPError as err:
        raise _Failed(classify(err), f"engine {engine_id} failed before its first event") from None


async def _whole(call: CallRecord, upstream: UpstreamResponse) -> Response:
    """A whole (non-streamed, or error) answer: nothing has reached the client yet, so any
    failure here, or an engine 502/503/504, may still be retried elsewhere."""
    eid = call.placed.engine.engine_id
    try:
        content = await upstream.aread()
    except httpx.HTTPError as err:
        await upstream.aclose()
        msg = f"engine {eid} failed mid-response ({type(err).__name__})"
        raise _Failed(classify(err), msg) from None
    media = upstream.headers.get("content-type", "application/json")
    status = upstream.status_code
    if status in RETRYABLE_STATUS:
        answer = Response(content, status_code=status, media_type=media, headers=call.headers())
        raise _Failed(Failure.OVERLOADED, f"engine {eid} answered {status}", answer)
    call.gw.breakers.record(eid, Outcome.SUCCESS)
    if status == 200:
        with contextlib.suppress(orjson.JSONDecodeError):
            call.usage = usage_from(orjson.loads(content))
    await call.finish(status)
    return Response(content, status_code=status, media_type=media, headers=call.headers())


def _stream_error(message: str, code: str) -> bytes:
    err = {"error": {"message": message, "type": "upstream_error", "code": code}}
    return b"data: " + orjson.dumps(err) + b"\n\n"


_MID_STREAM_ERROR = _stream_error("engine failed mid-stream", "upstream_unavailable")
_OVERTIME_ERROR = _stream_error("call exceeded the gateway's total timeout", "upstream_timeout")


async def _relay(
    gw: Gateway,
    call: CallRecord,
    upstream: UpstreamResponse,
    first: bytes,
    events: AsyncGenerator[bytes, None],
    deadline: float,
) -> AsyncGenerator[bytes, None]:
    """The rest of a stream whose first event is in hand. Past the first byte nothing is
    retried: a failure ends the stream with an OpenAI-style error event and a clean close."""
    status = 499  # unless the stream runs to its end, the client went away
    try:
        yield first
        async for data in events:
            yield data
            if time.perf_counter() > deadline:
                status = 504
                yield _OVERTIME_ERROR
                break
        else:
            status = 200
    except httpx.HTTPError as err:
        status = 502
        eid = call.placed.engine.engine_id
        gw.breakers.record(eid, _OUTCOME[classify(err)])
        gw.metrics.upstream_failures.labels(eid, "mid_stream").inc()
        yield _MID_STREAM_ERROR
    finally:
        # Cancellation is level-triggered under anyio: without the shield these awaits
        # would be cancelled too and the engine's slot would leak.
        with anyio.CancelScope(shield=True):
            await events.aclose()
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
        if self.placed.dispatch is not None:  # for per-stage traces (workflow executor)
            h["x-aragog-queue-wait"] = f"{self.placed.waited_s:.6f}"
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
