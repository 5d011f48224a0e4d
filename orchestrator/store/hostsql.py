"""Hosts in SQL, mixed into ``SqlStore``: registration, heartbeats, drain, and taking back
the attempts of a host whose heartbeat lapsed (or that restarted)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from orchestrator.store.backend import Tx
from orchestrator.store.errors import HostNotFound
from orchestrator.store.outbox import Announce, OutboxMessage, outbox_insert
from orchestrator.store.records import HostRecord, JobRecord, Row
from orchestrator.store.sqltext import ACTIVE_SQL, HOST_COLUMNS, JOBS_SELECT, NEW_ATTEMPT
from orchestrator.store.states import JobState

log = logging.getLogger(__name__)
_OUTBOX_ROWS = 1000  # outbox rows per INSERT of a large take-back


class HostsSql:
    """The ``Store`` host operations; needs ``_run``, ``_tx`` and ``host_stale_after`` from ``SqlStore``."""

    host_stale_after: float  # provided by SqlStore

    if TYPE_CHECKING:  # SqlStore provides these
        async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

        def _tx(self, write: bool = True) -> AbstractAsyncContextManager[Tx]: ...  # provided by SqlStore

    def _host(self, row: Row) -> HostRecord:
        return HostRecord.from_row(row, self.host_stale_after)

    async def register_host(self, name: str, labels: Sequence[str], capacity: int) -> HostRecord:
        if not name:
            raise ValueError("a host needs a name")
        if capacity < 0:
            raise ValueError("a host's capacity cannot be negative")
        [row] = await self._run(
            "INSERT INTO hosts (name, labels, capacity, running, last_heartbeat, draining, registered_at)"
            " VALUES ($1, $2, $3, 0, {now}, $4, {now}) ON CONFLICT (name) DO UPDATE SET"
            " labels = excluded.labels, capacity = excluded.capacity, running = 0,"
            " last_heartbeat = excluded.last_heartbeat, registered_at = excluded.registered_at"
            f" RETURNING {HOST_COLUMNS}",
            name, json.dumps(list(labels)), capacity, False,
        )
        return self._host(row)

    async def heartbeat(self, name: str, running: int) -> HostRecord:
        return await self._update_host(name, "running = $2, last_heartbeat = {now}", running)

    async def set_draining(self, name: str, draining: bool) -> HostRecord:
        return await self._update_host(name, "draining = $2", bool(draining))

    async def _update_host(self, name: str, assignments: str, value: object) -> HostRecord:
        rows = await self._run(f"UPDATE hosts SET {assignments} WHERE name = $1 RETURNING {HOST_COLUMNS}", name, value)
        if not rows:
            raise HostNotFound(name)
        return self._host(rows[0])

    async def list_hosts(self, stale_after: float | None = None) -> list[HostRecord]:
        limit = self.host_stale_after if stale_after is None else stale_after
        rows = await self._run(f"SELECT {HOST_COLUMNS} FROM hosts ORDER BY name")
        return [HostRecord.from_row(row, limit) for row in rows]

    async def requeue_lapsed(self, stale_after_seconds: float, max_attempts: int,
                             announce: Announce | None = None) -> list[JobRecord]:
        return await self._take_back_all(
            "SELECT a.job_id, a.attempt, a.host FROM attempts a JOIN hosts h ON h.name = a.host"
            f" WHERE a.state IN {ACTIVE_SQL} AND h.last_heartbeat < {{now}} - $1"
            " ORDER BY a.job_id{skip_locked}",
            (float(stale_after_seconds),),
            why=lambda host, attempt: (
                f"host {host} sent no heartbeat for over {stale_after_seconds:g}s during attempt {attempt}"),
            max_attempts=max_attempts,
            announce=announce,
        )

    async def requeue_host(self, host: str, max_attempts: int, why: str = "restarted", announce: Announce | None = None,
                           keep: Collection[str] = (), claimed_before: float = 0.0) -> list[JobRecord]:
        return await self._take_back_all(
            f"SELECT a.job_id, a.attempt, a.host FROM attempts a WHERE a.host = $1 AND a.state IN {ACTIVE_SQL}"
            " AND (a.started_at IS NULL OR a.started_at <= {now} - $2) ORDER BY a.job_id{skip_locked}",
            (host, float(claimed_before)),
            why=lambda host, attempt: f"host {host} {why} during attempt {attempt}",
            max_attempts=max_attempts,
            announce=announce,
            keep=keep,
        )

    async def _take_back_all(
        self, select: str, args: tuple[object, ...], why: Callable[[str, int], str], max_attempts: int,
        announce: Announce | None, keep: Collection[str] = (),
    ) -> list[JobRecord]:
        """End each attempt ``select`` finds (but those of the jobs in ``keep``) as errored; queue a
        new attempt unless it was attempt ``max_attempts``; store what ``announce`` says with it."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        changed: list[JobRecord] = []
        messages: list[OutboxMessage] = []
        async with self._tx() as tx:
            for found in await tx.fetch(select, *args):
                job_id, attempt = found["job_id"], int(found["attempt"])
                if job_id in keep:
                    continue
                lapse = why(found["host"], attempt)
                again = attempt < max_attempts
                reason = f"{lapse}; requeued as attempt {attempt + 1}" if again else (
                    f"{lapse}; gave up after {attempt} attempts")
                ended = await tx.fetch(
                    f"UPDATE attempts SET state = {int(JobState.ERRORED)}, reason = $3, updated_at = {{now}},"
                    f" finished_at = {{now}} WHERE job_id = $1 AND attempt = $2 AND state IN {ACTIVE_SQL}"
                    " RETURNING attempt",
                    job_id, attempt, reason,
                )
                if not ended:  # finished since the sweep read it (PostgreSQL holds the row lock; SQLite one writer)
                    continue
                if again:
                    await tx.execute(NEW_ATTEMPT, job_id, attempt + 1, reason)  # why it is queued again
                    await tx.execute("UPDATE jobs SET attempt = $2 WHERE job_id = $1", job_id, attempt + 1)
                row = await tx.fetchrow(f"{JOBS_SELECT} WHERE j.job_id = $1", job_id)
                assert row is not None
                changed.append(JobRecord.from_row(row))
                if announce is not None:
                    messages.extend(announce.messages(changed[-1]))
            for start in range(0, len(messages), _OUTBOX_ROWS):  # bounded statements: 5 parameters a row
                await tx.execute(*outbox_insert(announce.host, messages[start:start + _OUTBOX_ROWS]))  # type: ignore[union-attr]
        for record in changed:
            log.warning("job %s: %s", record.job_id, record.reason)
        return changed

    async def live_vm_names(self, host: str) -> set[str]:
        rows = await self._run(
            f"SELECT vm_name FROM attempts WHERE host = $1 AND state IN {ACTIVE_SQL} AND vm_name <> ''", host
        )
        return {row["vm_name"] for row in rows}
