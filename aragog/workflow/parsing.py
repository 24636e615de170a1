"""Output parsing: a stage's raw text to the answer later stages and the scorer read.

Every parser is total: text it cannot read gives the empty answer (``""`` or ``[]``), never
an exception, because a model's output is data, not a contract.
"""

from __future__ import annotations

import re
from typing import Literal

ParseKind = Literal["text", "choice", "number", "lines", "sql", "regex"]
Answer = str | list[str]

_CHOICE_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*:?\s*\(?([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"^\s*([A-J])\s*[.):]?\s*$", re.MULTILINE),
    # A bare capital, unless it starts a sentence ("I think", "A cat").
    re.compile(r"\b([A-J])\b(?!\s+[a-z])"),
)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|\(\d+\))\s*")
_SQL_FENCE = re.compile(r"```(?:sql)?\s*(.*?)```", re.IGNORECASE | re.DOTALL)
_SQL_START = re.compile(r"\b(SELECT|WITH)\b.*", re.IGNORECASE | re.DOTALL)


def parse_output(kind: ParseKind, text: str, pattern: str | None = None) -> Answer:
    if kind == "choice":
        return parse_choice(text)
    if kind == "number":
        return parse_number(text)
    if kind == "lines":
        return parse_lines(text)
    if kind == "sql":
        return parse_sql(text)
    if kind == "regex":
        assert pattern is not None, "the spec requires a pattern with parse: regex"
        return parse_regex(text, pattern)
    return text.strip()


def parse_choice(text: str) -> str:
    """A multiple-choice letter A-J; explicit "answer is X" beats a bare letter."""
    for rx in _CHOICE_PATTERNS:
        if m := rx.search(text):
            return m.group(1).upper()
    return ""


def parse_number(text: str) -> str:
    """The last number in the text, canonical: no thousands separators, no currency sign,
    no trailing ``.0`` (so "1,000.00" and "$1000" both read "1000")."""
    found = _NUMBER.findall(text)
    if not found:
        return ""
    return canonical_number(found[-1])


def canonical_number(s: str) -> str:
    s = s.strip().replace(",", "").replace("$", "")
    try:
        value = float(s)
    except ValueError:
        return ""
    return str(int(value)) if value.is_integer() else repr(value)


def parse_lines(text: str) -> list[str]:
    """Non-empty lines without their bullets or numbering (for plans and lists)."""
    lines = (_BULLET.sub("", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def parse_sql(text: str) -> str:
    """The query of a fenced block, else from the first SELECT/WITH to the first ';'."""
    m = _SQL_FENCE.search(text)
    body = m.group(1) if m else (s.group(0) if (s := _SQL_START.search(text)) else "")
    body = body.split(";", 1)[0]
    return " ".join(body.split())


def parse_regex(text: str, pattern: str) -> str:
    m = re.search(pattern, text, re.DOTALL)
    if m is None:
        return ""
    return (m.group(1) if m.groups() else m.group(0)).strip()
