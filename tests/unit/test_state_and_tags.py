from __future__ import annotations

from typing import Any

import pytest

from aragog.api.errors import ApiError
from aragog.api.tagging import Tags, extract_tags
from aragog.state import MemoryStore, RequestState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def new(rid: str) -> Any:
    return lambda s: s or RequestState("w", rid, 0.0)


async def test_ttl_evicts_idle_requests() -> None:
    clock = Clock()
    store = MemoryStore(ttl_s=10, max_requests=100, clock=clock)
    await store.update("w", "a", new("a"))
    clock.now = 5
    await store.update("w", "b", new("b"))
    clock.now = 12  # a idle for 12 s, b for 7 s
    assert await store.get("w", "a") is None
    assert await store.get("w", "b") is not None
    assert len(store) == 1


async def test_touch_refreshes_ttl_and_cap_bounds_size() -> None:
    clock = Clock()
    store = MemoryStore(ttl_s=10, max_requests=3, clock=clock)
    for i in range(5):
        await store.update("w", str(i), new(str(i)))
    assert len(store) == 3 and await store.get("w", "0") is None
    clock.now = 8
    await store.update("w", "2", lambda s: s.with_choice("x", "m") if s else new("2")(s))
    clock.now = 15
    kept = await store.get("w", "2")
    assert kept is not None and dict(kept.chosen) == {"x": "m"}
    assert await store.get("w", "3") is None


@pytest.mark.parametrize(
    ("headers", "body", "tags", "body_after"),
    [
        ({}, {"model": "m"}, Tags(), {"model": "m"}),
        ({"x-aragog-workflow": "w", "x-aragog-stage": "s"}, {}, Tags("w", None, "s"), {}),
        ({}, {"metadata": {"aragog_workflow": "w", "aragog_request_id": "r"}},
         Tags("w", "r", None), {}),
        ({"x-aragog-workflow": "w"}, {"metadata": {"aragog_workflow": "w", "k": "v"}},
         Tags("w", None, None), {"metadata": {"k": "v"}}),
    ],
)
def test_extract_tags(
    headers: dict[str, str], body: dict[str, Any], tags: Tags, body_after: dict[str, Any]
) -> None:
    assert extract_tags(headers, body) == tags
    assert body == body_after


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-aragog-workflow": "a"}, {"metadata": {"aragog_workflow": "b"}}),
        ({}, {"metadata": "x"}),
        ({}, {"metadata": {"aragog_stage": ""}}),
        ({"x-aragog-stage": " "}, {}),
    ],
)
def test_bad_tags(headers: dict[str, str], body: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as info:
        extract_tags(headers, body)
    assert info.value.status == 400
