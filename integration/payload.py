"""Reading fields out of a webhook's JSON with a clear error when one is missing.

Webhook bodies are untrusted dicts; this is the only place that indexes into
them. A missing or mistyped field raises ``PayloadError`` naming the field,
which the endpoint answers with 400.
"""

from __future__ import annotations

from typing import Any, TypeVar

from integration.errors import IntegrationError

T = TypeVar("T")


class PayloadError(IntegrationError):
    """The webhook body lacks a field the event needs, or has it with the wrong type."""


def get(payload: Any, path: str, kind: type[T], default: T | None = None) -> T:
    """``payload[a][b]...`` for ``path`` "a.b..." checked to be ``kind``; ``default`` if given and missing."""
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
    return value


def opt(payload: Any, path: str, kind: type[T]) -> T | None:
    """Like ``get`` but None when the field is missing or null."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return None
        value = value[part]
    return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else None
