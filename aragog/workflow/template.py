"""Prompt templates: ``{{input}}``, ``{{input.question}}``, ``{{generate}}``, ``{{plan.0}}``.

A placeholder is a dotted path. Its first part is ``input`` (the run's input) or the name of
an upstream stage (that stage's parsed answer); later parts index into objects by key and
into lists by position. Double braces keep single braces free for JSON and code in prompts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
INPUT = "input"


class TemplateError(ValueError):
    """A placeholder that cannot be filled; the message names the path."""


def references(template: str) -> list[tuple[str, ...]]:
    """Every placeholder path in ``template``, in order of appearance."""
    return [tuple(m.group(1).split(".")) for m in PLACEHOLDER.finditer(template)]


def render(template: str, scope: Mapping[str, object], strict: frozenset[str]) -> str:
    """Fill every placeholder from ``scope``. A path that does not resolve is an error when
    its root is in ``strict`` (the caller's input: their mistake) and renders empty
    otherwise (a model that listed fewer items than a later stage reads is not an error)."""

    def fill(m: re.Match[str]) -> str:
        path = tuple(m.group(1).split("."))
        value = resolve(scope, path)
        if value is _MISSING:
            if path[0] in strict:
                raise TemplateError(f"{'.'.join(path)}: not found")
            return ""
        return show(value)

    return PLACEHOLDER.sub(fill, template)


_MISSING = object()


def resolve(scope: Mapping[str, object], path: tuple[str, ...]) -> object:
    value: object = scope.get(path[0], _MISSING)
    for part in path[1:]:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def show(value: object) -> str:
    """How a value reads inside a prompt: text as is, lists one item a line, the rest JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return "\n".join(str(v) for v in value)
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)
