"""``POST /v1/workflows/{name}/runs``: run a workflow spec through this gateway.

Body: ``{"input": str | object, "request_id"?: str}``; an ``X-Aragog-Configuration`` header
forces every stage's model (profiling gateways only). Answers the final answer and a trace
per stage, or an OpenAI-style error naming the stage or input field at fault.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aragog.api.calls import ClientGone, json_object, read_body, until_disconnect
from aragog.api.errors import ApiError, bad_request, not_found
from aragog.api.gateway import Gateway
from aragog.workflow import forced
from aragog.workflow.executor import Executor, RunError, StageFailed

# Credentials and tracing travel with each stage call; nothing else of the caller's does.
_PASSED_ON = ("authorization", "traceparent")


async def handle_run(gw: Gateway, ex: Executor, request: Request, name: str) -> Response:
    spec = gw.workflows.get(name)
    if spec is None:
        raise not_found(f"unknown workflow {name!r}", "workflow_not_found")
    body = _parse(await read_body(request, gw.cfg.limits.max_body_bytes))
    force = request.headers.get(forced.HEADER)
    configuration = None
    if force is not None:
        if not gw.cfg.profiling:
            raise ApiError(
                403,
                f"{forced.HEADER} is accepted only when the gateway runs with profiling: true",
                "profiling_disabled",
                "permission_error",
            )
        try:
            config = forced.parse(force, spec)
        except ValueError as err:
            raise bad_request(str(err), "invalid_configuration") from None
        configuration = dict(zip(spec.stage_names, config, strict=True))
    headers = {h: v for h in _PASSED_ON if (v := request.headers.get(h)) is not None}
    work = ex.run(
        spec,
        body["input"],
        request_id=body.get("request_id"),
        configuration=configuration,
        headers=headers,
    )
    try:
        result = await until_disconnect(request, work)
    except ClientGone:
        return Response(status_code=499)
    except RunError as err:
        retry = err.retry_after if isinstance(err, StageFailed) else None
        raise ApiError(
            err.status,
            str(err),
            err.code,
            "upstream_error" if err.status >= 500 else "invalid_request_error",
            headers={"Retry-After": retry} if retry else None,
        ) from None
    return Response(orjson.dumps(result.to_json()), media_type="application/json")


def _parse(raw: bytes) -> dict[str, Any]:
    body = json_object(raw)
    if "input" not in body:
        raise bad_request("missing required field 'input'", param="input")
    unknown = sorted(set(body) - {"input", "request_id"})
    if unknown:
        raise bad_request(f"unknown fields {unknown} (expected input, request_id)")
    rid = body.get("request_id")
    if rid is not None and (not isinstance(rid, str) or not rid.strip()):
        raise bad_request("'request_id' must be a non-empty string", param="request_id")
    return body
