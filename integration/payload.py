"""Reading fields out of a webhook's JSON with a clear error when one is missing.

Webhook bodies are untrusted dicts; this is the only place that indexes into
them. A missing or mistyped field, or a number out of range for what it
becomes (an int32 pull request number, an int64 installation id), raises
``PayloadError`` naming the field, which the endpoint answers with 400.
"""

from __future__ import annotations

from typing import Any, TypeVar

from integration.errors import IntegrationError

T = TypeVar("T")

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class PayloadError(IntegrationError):
    """The webhook body lacks a field the event needs, or has it with the wrong type."""


def _in_range(path: str, value: int, maximum: int) -> int:
    if not 0 <= value <= maximum:
        raise PayloadError(f"the webhook field {path!r} is out of range: {str(value)[:30]} is not 0..{maximum}")
    return value


def get(payload: Any, path: str, kind: type[T], default: T | None = None, maximum: int = INT64_MAX) -> T:
    """``payload[a][b]...`` for ``path`` "a.b..." checked to be ``kind``; ``default`` if given and missing.

    Numbers must be in ``0..maximum``.
    """
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            if default is not None:
                return default
            raise PayloadError(f"the webhook body has no {path!r} field")
        value = value[part]
    if kind is int and isinstance(value, bool):
        raise PayloadError(f"the webhook field {path!r} must be a number")
    if not isinstance(value, kind):
        raise PayloadError(f"the webhook field {path!r} must be {kind.__name__}, not {type(value).__name__}")
    if kind is int:
        _in_range(path, value, maximum)  # type: ignore[arg-type]
    return value


def opt(payload: Any, path: str, kind: type[T], maximum: int = INT64_MAX) -> T | None:
    """Like ``get`` but None when the field is missing, null or of another type (a number out of range still raises)."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return None
        value = value[part]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return None
    if kind is int:
        _in_range(path, value, maximum)  # type: ignore[arg-type]
    return value
