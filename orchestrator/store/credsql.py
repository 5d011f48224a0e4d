"""Clone-URL credentials in SQL, mixed into ``SqlStore``: kept apart from the job record,
only while the job is unfinished (see migrations 004_clone_credentials.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.store.records import Row
from orchestrator.store.sqltext import TERMINAL_SQL

# A credential whose job never got stored (its Submit failed half-way) goes after this long.
ORPHAN_SECONDS = 3600.0


class CredentialsSql:
    """The ``Store`` clone-credential operations; needs ``_run`` from ``SqlStore``."""

    if TYPE_CHECKING:  # SqlStore provides these
        async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

    async def put_clone_credentials(self, job_id: str, userinfo: str) -> None:
        await self._run(
            "INSERT INTO clone_credentials (job_id, userinfo, created_at) VALUES ($1, $2, {now})"
            " ON CONFLICT (job_id) DO UPDATE SET userinfo = excluded.userinfo, created_at = excluded.created_at",
            job_id, userinfo,
        )

    async def clone_credentials(self, job_id: str) -> str | None:
        rows = await self._run("SELECT userinfo FROM clone_credentials WHERE job_id = $1", job_id)
        return str(rows[0]["userinfo"]) if rows else None

    async def purge_clone_credentials(self) -> int:
        rows = await self._run(
            "DELETE FROM clone_credentials WHERE EXISTS (SELECT 1 FROM jobs j JOIN attempts a"
            " ON a.job_id = j.job_id AND a.attempt = j.attempt"
            f" WHERE j.job_id = clone_credentials.job_id AND a.state IN {TERMINAL_SQL})"
            " OR (created_at < {now} - $1"
            " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = clone_credentials.job_id))"
            " RETURNING job_id",
            ORPHAN_SECONDS,
        )
        return len(rows)
