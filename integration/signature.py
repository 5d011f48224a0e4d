"""Webhook signatures: HMAC-SHA256 of the raw body with the per-forge secret.

GitHub sends ``X-Hub-Signature-256: sha256=<hex>``; Forgejo and Gitea send
``X-Forgejo-Signature`` / ``X-Gitea-Signature: <hex>`` (and the GitHub header
too). Comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` (what a forge puts in its signature header)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_signature(headers: Mapping[str, str]) -> str | None:
    value = headers.get("X-Hub-Signature-256")
    if value is None or not value.startswith("sha256="):
        return None
    return value.removeprefix("sha256=")


def forgejo_signature(headers: Mapping[str, str]) -> str | None:
    for name in ("X-Forgejo-Signature", "X-Gitea-Signature"):
        if headers.get(name):
            return headers[name]
    return github_signature(headers)


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """True only when a secret is configured and ``signature`` is the body's HMAC."""
    if not secret or not signature:
        return False
    expected = sign(secret, body)
    # compare_digest on bytes: a non-ASCII header must not raise, just fail.
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace"))
