"""Tag the calls of one workflow request for the gateway, without knowing its header names.

With the OpenAI SDK::

    req = WorkflowRequest("refine")
    draft = client.chat.completions.create(
        model="any", messages=..., extra_headers=req.headers("generate"))
    # or bind once: gen = req.bind(client, "generate"); gen.chat.completions.create(...)

With httpx: ``httpx.post(url, json=body, headers=req.headers("critique"))``; in a body of
your own: ``{"metadata": req.metadata("critique"), ...}``. The request id ties the calls
together (the router runs once per request); a fresh one is drawn when none is given.

``run``/``arun`` execute a whole workflow spec on the gateway (``POST
/v1/workflows/{name}/runs``) and return its JSON result with the per-stage trace.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import httpx

from aragog.workflow import forced

WORKFLOW_HEADER = "x-aragog-workflow"
REQUEST_ID_HEADER = "x-aragog-request-id"
STAGE_HEADER = "x-aragog-stage"
CONFIGURATION_HEADER = forced.HEADER

C = TypeVar("C", covariant=True)


class SupportsOptions(Protocol[C]):
    """What OpenAI SDK clients (sync and async) offer: a copy with other defaults."""

    def with_options(self, *, default_headers: Mapping[str, str]) -> C: ...


class WorkflowRequest:
    def __init__(
        self,
        workflow: str,
        request_id: str | None = None,
        configuration: Mapping[str, str] | None = None,
    ) -> None:
        """``configuration`` (stage -> model) forces models; only for profiling gateways."""
        self.workflow = workflow
        self.request_id = request_id or uuid.uuid4().hex
        self.configuration = dict(configuration) if configuration else None

    def headers(self, stage: str) -> dict[str, str]:
        h = {
            WORKFLOW_HEADER: self.workflow,
            REQUEST_ID_HEADER: self.request_id,
            STAGE_HEADER: stage,
        }
        if self.configuration is not None:
            h[CONFIGURATION_HEADER] = forced.encode(self.configuration)
        return h

    def metadata(self, stage: str) -> dict[str, str]:
        """The same tags as body ``metadata`` (for clients that cannot set headers)."""
        return {
            "aragog_workflow": self.workflow,
            "aragog_request_id": self.request_id,
            "aragog_stage": stage,
        }

    def bind(self, client: SupportsOptions[C], stage: str) -> C:
        """A copy of an OpenAI client whose every call is tagged as ``stage``."""
        return client.with_options(default_headers=self.headers(stage))


def run_body(input: object, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"input": input}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def run(
    base_url: str,
    workflow: str,
    input: object,
    *,
    configuration: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Run a workflow on the gateway at ``base_url``; raises httpx.HTTPStatusError on errors
    (the body is an OpenAI-style error naming the problem)."""
    headers = {CONFIGURATION_HEADER: forced.encode(configuration)} if configuration else {}
    resp = httpx.post(
        f"{base_url.rstrip('/')}/v1/workflows/{workflow}/runs",
        json=run_body(input),
        headers=headers,
        timeout=timeout,
    )
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


async def arun(
    client: httpx.AsyncClient,
    workflow: str,
    input: object,
    *,
    configuration: Mapping[str, str] | None = None,
) -> httpx.Response:
    """The async form over a client whose base URL is the gateway; returns the response
    (callers that retry want the status and headers, e.g. Retry-After)."""
    headers = {CONFIGURATION_HEADER: forced.encode(configuration)} if configuration else {}
    return await client.post(
        f"/v1/workflows/{workflow}/runs", json=run_body(input), headers=headers
    )
