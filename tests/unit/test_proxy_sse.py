from __future__ import annotations

import pytest

from aragog.proxy import Usage, split_events, usage_event


@pytest.mark.parametrize(
    ("buffer", "events", "rest"),
    [
        (b"", [], b""),
        (b"data: a\n\n", [b"data: a\n\n"], b""),
        (b"data: a\n\ndata: b", [b"data: a\n\n"], b"data: b"),
        (b"data: a\n\ndata: b\n\n", [b"data: a\n\n", b"data: b\n\n"], b""),
    ],
)
def test_split_events(buffer: bytes, events: list[bytes], rest: bytes) -> None:
    assert split_events(buffer) == (events, rest)


@pytest.mark.parametrize(
    ("event", "usage"),
    [
        (b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":9}}\n\n',
         Usage(4, 9)),
        (b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":4}}\n\n', None),
        (b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n', None),
        (b'data: {"choices":[],"usage":null}\n\n', None),
        (b"data: [DONE]\n\n", None),
        (b'data: {"choices":[],"usage":{broken\n\n', None),
    ],
)
def test_usage_event(event: bytes, usage: Usage | None) -> None:
    assert usage_event(event) == usage
