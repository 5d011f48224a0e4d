"""Retention in SQL, mixed into ``SqlStore``: which finished jobs are older than the retention
age (by the database clock) and deleting their records (the job, its attempts and steps)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from orchestrator.store.backend import Tx
from orchestrator.store.records import Row
from orchestrator.store.sqltext import TERMINAL_SQL

# The job's current attempt finished more than $n seconds ago (every earlier one finished before it).
_EXPIRED = (f"EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = jobs.job_id AND a.attempt = jobs.attempt"
            f" AND a.state IN {TERMINAL_SQL} AND a.finished_at < {{now}} - $2)")


class RetentionSql:
    """The ``Store`` retention operations; needs ``_run`` and ``_tx`` from ``SqlStore``."""

    if TYPE_CHECKING:  # SqlStore provides these
        async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

        def _tx(self, write: bool = True) -> AbstractAsyncContextManager[Tx]: ...  # provided by SqlStore

    async def expired_jobs(self, older_than: float, limit: int = 1000) -> list[str]:
        rows = await self._run(
            f"SELECT job_id FROM jobs WHERE {_EXPIRED.replace('$2', '$1')} ORDER BY seq LIMIT $2",
            older_than, limit)
        return [row["job_id"] for row in rows]

    async def delete_jobs(self, job_ids: Sequence[str], older_than: float) -> list[str]:
        deleted: list[str] = []
        async with self._tx() as tx:
            for job_id in job_ids:
                # Re-checked under the job row's lock: a retry since the listing keeps the job.
                if not await tx.fetch(f"UPDATE jobs SET attempt = attempt WHERE job_id = $1 AND {_EXPIRED}"
                                      " RETURNING job_id", job_id, older_than):
                    continue
                for table in ("steps", "attempts", "clone_credentials", "test_reports"):
                    await tx.execute(f"DELETE FROM {table} WHERE job_id = $1", job_id)
                await tx.execute("DELETE FROM jobs WHERE job_id = $1", job_id)
                deleted.append(job_id)
        return deleted
