"""Operator tokens in SQL, mixed into ``SqlStore``: add, look up by id, list, revoke.

The store keeps rows; what a token is and how it is checked is ``orchestrator.operators``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.store.records import OperatorTokenRecord, Row

_COLUMNS = "token_id, name, role, token_hash, created_at, expires_at, revoked_at, {now} AS now"


class TokensSql:
    """The ``Store`` operator-token operations; needs ``_run`` from ``SqlStore``."""

    if TYPE_CHECKING:  # SqlStore provides these
        async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

    async def add_operator_token(self, token_id: str, name: str, role: str, token_hash: str,
                                 expires_in: float | None) -> OperatorTokenRecord:
        expiry, args = ("NULL", ()) if expires_in is None else ("{now} + $5", (float(expires_in),))
        [row] = await self._run(
            "INSERT INTO operator_tokens (token_id, seq, name, role, token_hash, created_at, expires_at)"
            " VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM operator_tokens), $2, $3, $4, {now},"
            f" {expiry}) RETURNING {_COLUMNS}",
            token_id, name, role, token_hash, *args,
        )
        return OperatorTokenRecord.from_row(row)

    async def operator_token(self, token_id: str) -> OperatorTokenRecord | None:
        rows = await self._run(f"SELECT {_COLUMNS} FROM operator_tokens WHERE token_id = $1", token_id)
        return OperatorTokenRecord.from_row(rows[0]) if rows else None

    async def operator_tokens(self) -> list[OperatorTokenRecord]:
        rows = await self._run(f"SELECT {_COLUMNS} FROM operator_tokens ORDER BY seq DESC")
        return [OperatorTokenRecord.from_row(row) for row in rows]

    async def revoke_operator_token(self, name_or_id: str) -> OperatorTokenRecord | None:
        rows = await self._run(
            "UPDATE operator_tokens SET revoked_at = {now}"
            f" WHERE (name = $1 OR token_id = $1) AND revoked_at IS NULL RETURNING {_COLUMNS}",
            name_or_id,
        )
        return OperatorTokenRecord.from_row(rows[0]) if rows else None
