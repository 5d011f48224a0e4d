"""Operator tokens: created once, stored as a hash, verified in constant time.

A token reads ``solstice_<id>_<secret>``: ``id`` (12 hex digits) is public and
names the row; ``secret`` (32 random bytes, base64url) is never stored - the
store keeps its SHA-256 and ``verify`` compares hashes with
``hmac.compare_digest``. A token may expire (judged by the database clock) and
may be revoked; either refuses it from the next call on.

    tokens = OperatorTokens(store)
    text, record = await tokens.create("alice", Role.OPERATE, expires_in=90 * 86400)
    principal = await tokens.verify(text)        # Principal("alice", Role.OPERATE, id)

``verify`` is the one check every door uses (AdminService, and the dashboard's
sign-in of issue 21). Errors::

    SolsticeError
    └── OperatorTokenError         token management refused (bad name, name taken, none to revoke)
        └── TokenRefused           a presented token is not valid, expired or revoked
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from common.errors import SolsticeError
from orchestrator.operators.roles import Principal, Role
from orchestrator.store import ConstraintViolation, OperatorTokenRecord, Store

PREFIX = "solstice_"
_TOKEN = re.compile(r"^solstice_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class OperatorTokenError(SolsticeError):
    """An operator-token operation was refused; the message says why."""


class TokenRefused(OperatorTokenError):
    """A presented token does not authenticate anyone."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise OperatorTokenError(f"token name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-'")
    return name


class OperatorTokens:
    """Create, list, revoke and verify operator tokens kept in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, name: str, role: Role, expires_in: float | None = None) -> tuple[str, OperatorTokenRecord]:
        """A new token for ``name``: the token text (shown once) and its stored record."""
        check_name(name)
        if expires_in is not None and expires_in <= 0:
            raise OperatorTokenError("a token's lifetime must be positive")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        try:
            record = await self.store.add_operator_token(token_id, name, role.label, _hash(secret), expires_in)
        except ConstraintViolation:
            raise OperatorTokenError(f"a live token named {name!r} exists; revoke it first or choose "
                                     "another name") from None
        return f"{PREFIX}{token_id}_{secret}", record

    async def list(self) -> list[OperatorTokenRecord]:
        return await self.store.operator_tokens()

    async def revoke(self, name_or_id: str) -> OperatorTokenRecord:
        record = await self.store.revoke_operator_token(name_or_id)
        if record is None:
            raise OperatorTokenError(f"no live token named {name_or_id!r} (or with that id)")
        return record

    async def verify(self, token: str) -> Principal:
        """The operator ``token`` authenticates; ``TokenRefused`` (one line, safe to show) otherwise."""
        found = _TOKEN.match(token.strip())
        if found is None:
            raise TokenRefused("the token is not a Solstice operator token")
        token_id, secret = found.groups()
        record = await self.store.operator_token(token_id)
        # Hash compared even for an unknown id: the answer takes as long either way.
        stored = record.token_hash if record is not None else _hash("")
        if not hmac.compare_digest(stored, _hash(secret)) or record is None:
            raise TokenRefused("the token is not valid")
        if record.revoked:
            raise TokenRefused(f"token {record.name!r} was revoked")
        if record.expired:
            raise TokenRefused(f"token {record.name!r} expired")
        return Principal(record.name, Role.parse(record.role), record.token_id)
