"""The durable event outbox in SQL (``event_outbox``, migration 002), mixed into ``SqlStore``.

A node writes each job event it announces here right after the state change
the event reports, publishes it, and deletes the row once the broker
confirmed. Rows left by a crash are published by the same host when it
starts again, or taken over by any live node once that host's heartbeat
lapsed (``outbox_adopt``). Delivery is at least once; consumers dedupe on
``event_id``. ``seq`` is the announce order, so each job's events keep theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from common.rpc import jobs_pb2
from orchestrator.store.backend import Backend, Tx
from orchestrator.store.records import Row

OutboxRow = tuple[int, jobs_pb2.JobEvent]  # (seq, event)

def outbox_insert(host: str, events: Sequence[jobs_pb2.JobEvent]) -> tuple[object, ...]:
    """``(sql, *args)``: ONE statement storing ``events`` in order (atomic on its own)."""
    values, args = [], []
    for n in range(len(events)):
        values.append(f"($1, ${3 * n + 2}, ${3 * n + 3}, ${3 * n + 4}, {{now}})")
    for event in events:
        args += [event.job_id, event.event_id, event.SerializeToString()]
    sql = "INSERT INTO event_outbox (host, job_id, event_id, event, created_at) VALUES " + ", ".join(values)
    return (sql, host, *args)


def outbox_cte(guard: str, first: int, host: str, events: Sequence[jobs_pb2.JobEvent]) -> tuple[str, list[object]]:
    """``(cte, args)``: a ``stored AS (...)`` CTE (PostgreSQL) putting ``events`` in ``host``'s
    outbox, in order, only if the CTE named ``guard`` returned a row. Its parameters start
    at ``$first``: the host, then 3 per event."""
    values = ", ".join(
        f"(${first + 1 + 3 * n}::text, ${first + 2 + 3 * n}::text, ${first + 3 + 3 * n}::bytea, {n})"
        for n in range(len(events)))
    args: list[object] = [host]
    for event in events:
        args += [event.job_id, event.event_id, event.SerializeToString()]
    cte = (f"stored AS (INSERT INTO event_outbox (host, job_id, event_id, event, created_at)"
           f" SELECT ${first}, v.job_id, v.event_id, v.event, {{now}} FROM (VALUES {values})"
           f" AS v(job_id, event_id, event, pos) WHERE EXISTS (SELECT 1 FROM {guard}) ORDER BY v.pos RETURNING 1)")
    return cte, args


def _rows(rows: Sequence[Row]) -> list[OutboxRow]:
    found = []
    for row in rows:
        event = jobs_pb2.JobEvent()
        event.ParseFromString(bytes(row["event"]))
        found.append((int(row["seq"]), event))
    return found


class OutboxSql:
    """The ``Store`` outbox operations; needs ``_run`` and ``_tx`` from ``SqlStore``."""

    backend: Backend  # provided by SqlStore

    async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

    def _tx(self, write: bool = True) -> AbstractAsyncContextManager[Tx]: ...  # provided by SqlStore

    async def _write_announced(self, sql: str, args: Sequence[object], host: str,
                               events: Sequence[jobs_pb2.JobEvent]) -> bool:
        """Run the write ``sql`` (it RETURNs a row when it applied); if it applied, store
        ``events`` for ``host`` with it, atomically. True when it applied.

        One statement where the backend has writable CTEs (PostgreSQL: 1 round trip
        instead of BEGIN, write, INSERT, COMMIT), else one transaction. The events keep
        the order given (``seq`` order)."""
        if not events:
            return bool(await self._run(sql, *args))
        if self.backend.writable_cte:
            stored, stored_args = outbox_cte("applied", len(args) + 1, host, events)
            rows = await self._run(f"WITH applied AS ({sql}), {stored} SELECT count(*) AS n FROM applied",
                                   *args, *stored_args)
            return bool(rows[0]["n"])
        async with self._tx() as tx:
            applied = await tx.fetch(sql, *args)
            if applied:
                await tx.execute(*outbox_insert(host, events))
        return bool(applied)

    async def outbox_add(self, host: str, events: Sequence[jobs_pb2.JobEvent]) -> None:
        """Store ``events`` (in order) for ``host`` to publish."""
        if events:
            sql, *args = outbox_insert(host, events)
            await self._run(str(sql), *args)

    async def outbox_rows(self, host: str) -> list[OutboxRow]:
        """Every unpublished event of ``host``, oldest first."""
        return _rows(await self._run("SELECT seq, event FROM event_outbox WHERE host = $1 ORDER BY seq", host))

    async def outbox_delete(self, event_ids: Sequence[str]) -> None:
        """Forget published events (unknown ids are ignored)."""
        if not event_ids:
            return
        # Padded to a power of two (with a repeated id): a handful of statement shapes to
        # prepare on every pooled connection instead of one per batch size.
        ids = list(event_ids) + [event_ids[-1]] * ((1 << (len(event_ids) - 1).bit_length()) - len(event_ids))
        marks = ", ".join(f"${n}" for n in range(1, len(ids) + 1))
        await self._run(f"DELETE FROM event_outbox WHERE event_id IN ({marks})", *ids)

    async def outbox_adopt(self, host: str, stale_after_seconds: float) -> list[OutboxRow]:
        """Move to ``host`` the rows of hosts whose heartbeat lapsed (or that never registered).

        Concurrent adopters each get disjoint rows (one conditional UPDATE).
        Returns the rows taken, oldest first.
        """
        rows = await self._run(
            "UPDATE event_outbox SET host = $1 WHERE host <> $1 AND host NOT IN"
            " (SELECT name FROM hosts WHERE last_heartbeat >= {now} - $2) RETURNING seq, event",
            host, float(stale_after_seconds),
        )
        return sorted(_rows(rows), key=lambda row: row[0])
