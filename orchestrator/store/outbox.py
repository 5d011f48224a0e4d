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
from orchestrator.store.backend import Tx
from orchestrator.store.records import Row

OutboxRow = tuple[int, jobs_pb2.JobEvent]  # (seq, event)

_INSERT = "INSERT INTO event_outbox (host, job_id, event, created_at) VALUES ($1, $2, $3, {now}) RETURNING seq"


def _rows(rows: Sequence[Row]) -> list[OutboxRow]:
    found = []
    for row in rows:
        event = jobs_pb2.JobEvent()
        event.ParseFromString(bytes(row["event"]))
        found.append((int(row["seq"]), event))
    return found


class OutboxSql:
    """The ``Store`` outbox operations; needs ``_run`` and ``_tx`` from ``SqlStore``."""

    async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

    def _tx(self, write: bool = True) -> AbstractAsyncContextManager[Tx]: ...  # provided by SqlStore

    async def outbox_add(self, host: str, events: Sequence[jobs_pb2.JobEvent]) -> list[int]:
        """Store ``events`` (in order) for ``host`` to publish; returns their seqs."""
        if len(events) == 1:  # the common case: one statement, no BEGIN/COMMIT round trips
            [event] = events
            rows = await self._run(_INSERT, host, event.job_id, event.SerializeToString())
            return [int(rows[0]["seq"])]
        seqs = []
        async with self._tx() as tx:
            for event in events:
                row = await tx.fetchrow(_INSERT, host, event.job_id, event.SerializeToString())
                assert row is not None
                seqs.append(int(row["seq"]))
        return seqs

    async def outbox_rows(self, host: str) -> list[OutboxRow]:
        """Every unpublished event of ``host``, oldest first."""
        return _rows(await self._run("SELECT seq, event FROM event_outbox WHERE host = $1 ORDER BY seq", host))

    async def outbox_delete(self, seqs: Sequence[int]) -> None:
        """Forget published events (unknown seqs are ignored)."""
        if not seqs:
            return
        marks = ", ".join(f"${n}" for n in range(1, len(seqs) + 1))
        await self._run(f"DELETE FROM event_outbox WHERE seq IN ({marks})", *[int(seq) for seq in seqs])

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
