"""Reading a branch's head commit out of a forge's "get a branch" answer (GitHub and Forgejo)."""

from __future__ import annotations

import re
from typing import Any

from integration.errors import ForgeError

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def branch_sha(body: Any, where: tuple[str, ...], what: str) -> str:
    """The commit id at ``body[where[0]][where[1]]...``; ``ForgeError`` when the answer has none."""
    value = body
    for key in where:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise ForgeError(f"{what}: the forge's answer has no commit id at {'.'.join(where)}")
    return value
