"""Reading typed values out of raw KDL entries, with user-facing type errors."""

from __future__ import annotations

import json

import kdl.types

from common.workflow.syntax import RawValue

STRING = "a string"
BOOLEAN = "a boolean (true or false)"


def describe(value: kdl.types.Value) -> str:
    """What kind of KDL value this is, as a user would say it."""
    if isinstance(value, kdl.types.Stringish):
        return "a string"
    if isinstance(value, kdl.types.Bool):
        return "a boolean"
    if isinstance(value, kdl.types.Null):
        return "null"
    return "a number"


def show(value: kdl.types.Value) -> str:
    """A short rendering of a value for an error message."""
    if isinstance(value, kdl.types.Stringish):
        text = value.value
        if len(text) > 40:
            text = text[:37] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, kdl.types.Bool):
        return "true" if value.value else "false"
    if isinstance(value, kdl.types.Null):
        return "null"
    return value.print()


def typed(raw: RawValue, kind: str) -> tuple[object, str | None]:
    """``(python value, None)`` if ``raw`` is of ``kind``, else ``(None, why not)``."""
    value = raw.value
    if value.tag is not None:
        return None, f"has a type annotation ({value.tag}); annotations are not supported"
    if kind == STRING and isinstance(value, kdl.types.Stringish):
        return value.value, None
    if kind == BOOLEAN and isinstance(value, kdl.types.Bool):
        return value.value, None
    return None, f"must be {kind}, not {describe(value)}"
