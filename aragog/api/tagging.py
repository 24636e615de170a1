"""Which workflow, request and stage a call belongs to: headers or body ``metadata``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aragog.api.errors import bad_request

HEADERS = {
    "workflow": "x-aragog-workflow",
    "request_id": "x-aragog-request-id",
    "stage": "x-aragog-stage",
}
METADATA_KEYS = {
    "workflow": "aragog_workflow",
    "request_id": "aragog_request_id",
    "stage": "aragog_stage",
}


@dataclass(frozen=True, slots=True)
class Tags:
    workflow: str | None = None
    request_id: str | None = None
    stage: str | None = None


def extract_tags(headers: Mapping[str, str], body: dict[str, Any]) -> Tags:
    """Read tags from headers, then from ``body["metadata"]``, removing ours from the body so
    engines never see them. The same tag given twice with different values is an error."""
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad_request("'metadata' must be an object", param="metadata")
    found: dict[str, str | None] = {}
    for field, header in HEADERS.items():
        value = headers.get(header)
        key = METADATA_KEYS[field]
        if meta is not None and key in meta:
            from_body = meta.pop(key)
            if not isinstance(from_body, str) or not from_body:
                raise bad_request(f"metadata.{key} must be a non-empty string", param="metadata")
            if value is not None and value != from_body:
                raise bad_request(f"{header} header and metadata.{key} disagree", param="metadata")
            value = from_body
        if value is not None and not value.strip():
            raise bad_request(f"{header} must not be empty")
        found[field] = value
    if meta is not None and not meta:
        del body["metadata"]  # an empty object we emptied ourselves
    return Tags(**found)
