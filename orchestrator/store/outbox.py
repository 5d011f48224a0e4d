"""The durable outbox in SQL (``event_outbox``, migrations 002 and 003), mixed into ``SqlStore``.

It holds what a node must publish: the job events it announces, written with
(or right after) the state change each reports, and the job requests of the
attempts a requeue or a retry queued, written in the same transaction as the
new attempt (``Announce``). The node publishes the rows and deletes each once
the broker confirmed it. Rows left by a crash are published by the same host
when it starts again, or taken over by any live node once that host's
heartbeat lapsed (``outbox_adopt``). Delivery is at least once; consumers
dedupe (events on ``event_id``, requests by the idempotent claim). ``seq`` is
the write order, so each job's messages keep theirs (a requeue's ``queued``
event goes before its request).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.rpc import jobs_pb2
from orchestrator.store.backend import Backend, Tx
from orchestrator.store.records import JobRecord, Row

_EVENT, _REQUEST = 0, 1  # event_outbox.kind


@dataclass(frozen=True)
class OutboxRequest:
    """A job request for the outbox to publish: the new attempt of a requeue or a retry."""

    message_id: str  # what a confirmed publish deletes its row by (unique, like an event id)
    request: jobs_pb2.JobRequest
    priority: int = 0  # the queue priority it is published with

    @property
    def job_id(self) -> str:
        return self.request.job_id


OutboxMessage = jobs_pb2.JobEvent | OutboxRequest
OutboxRow = tuple[int, OutboxMessage]  # (seq, message)


def message_id(message: OutboxMessage) -> str:
    """The id a message's outbox row is deleted by."""
    return message.message_id if isinstance(message, OutboxRequest) else message.event_id


@dataclass(frozen=True)
class Announce:
    """What a store change that makes new attempts stores in ``host``'s outbox, in the SAME
    transaction: ``messages(job)`` for each job it changed, as the job is after the change
    (``Store.requeue_lapsed``, ``requeue_host``, ``retry``)."""

    host: str
    messages: Callable[[JobRecord], Sequence[OutboxMessage]]


def outbox_insert(host: str, messages: Sequence[OutboxMessage]) -> tuple[str, *tuple[object, ...]]:
    """``(sql, *args)``: ONE statement storing ``messages`` in order (atomic on its own)."""
    values: list[str] = []
    args: list[Any] = []
    for n, message in enumerate(messages):
        values.append(f"($1, ${5 * n + 2}, ${5 * n + 3}, ${5 * n + 4}, ${5 * n + 5}, ${5 * n + 6}, {{now}})")
        if isinstance(message, OutboxRequest):
            args += [message.job_id, message.message_id, message.request.SerializeToString(), _REQUEST,
                     message.priority]
        else:
            args += [message.job_id, message.event_id, message.SerializeToString(), _EVENT, 0]
    sql = ("INSERT INTO event_outbox (host, job_id, event_id, event, kind, priority, created_at) VALUES "
           + ", ".join(values))
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
    found: list[OutboxRow] = []
    for row in rows:
        if int(row["kind"]) == _REQUEST:
            request = jobs_pb2.JobRequest()
            request.ParseFromString(bytes(row["event"]))
            found.append((int(row["seq"]), OutboxRequest(row["event_id"], request, int(row["priority"]))))
        else:
            event = jobs_pb2.JobEvent()
            event.ParseFromString(bytes(row["event"]))
            found.append((int(row["seq"]), event))
    return found


_COLUMNS = "seq, event, kind, priority, event_id"


class OutboxSql:
    """The ``Store`` outbox operations; needs ``_run`` and ``_tx`` from ``SqlStore``."""

    backend: Backend  # provided by SqlStore

    if TYPE_CHECKING:  # SqlStore provides these
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

    async def outbox_add(self, host: str, messages: Sequence[OutboxMessage]) -> None:
        """Store ``messages`` (in order) for ``host`` to publish."""
        if messages:
            sql, *args = outbox_insert(host, messages)
            await self._run(str(sql), *args)

    async def outbox_rows(self, host: str) -> list[OutboxRow]:
        """Every unpublished message of ``host``, oldest first."""
        return _rows(await self._run(f"SELECT {_COLUMNS} FROM event_outbox WHERE host = $1 ORDER BY seq", host))

    async def outbox_delete(self, event_ids: Sequence[str]) -> None:
        """Forget published messages, by ``message_id`` (unknown ids are ignored)."""
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
            f" (SELECT name FROM hosts WHERE last_heartbeat >= {{now}} - $2) RETURNING {_COLUMNS}",
            host, float(stale_after_seconds),
        )
        return sorted(_rows(rows), key=lambda row: row[0])
