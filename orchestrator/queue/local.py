"""The single-node job queue: the RabbitMQ semantics, kept in a SQLite file.

``LocalQueue`` is both the node's ``JobPublisher`` and its ``JobConsumer``.
A published request is a row; it is deleted only when ``on_job`` returns
``ACK``. Rows handed out and not yet settled are marked in flight; on start
every in-flight mark is cleared, so after a crash (or a kill) those requests
are delivered again - a restart loses nothing; each such interrupted delivery
counts as a failed attempt, like a raising ``on_job``. Requests for a label
the node does not serve, poison rows and requests that used up
``max_attempts`` move to the dead-letter table with a reason, and ``on_dead_letter`` is called for
each (the call is recorded, so it happens again after a crash until it
succeeds). The tables live in the file given by path; the single-node state
store may share the file (WAL mode, short transactions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from common.queue.codec import decode_job_request, encode_job_request, job_id_in
from common.queue.disposition import Action, handle_stored
from common.queue.sqlite import QueueTable, SqliteQueueFile
from common.queue.tasks import finish_or_cancel
from common.queue.topology import NEW_WORK, validate_label
from common.rpc import jobs_pb2
from orchestrator.queue.contract import DEFAULT_MAX_ATTEMPTS, OnDeadLetter, OnJob, dead_letter_call, request_in

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    label TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,   -- failed on_job calls so far
    deliveries INTEGER NOT NULL DEFAULT 0,
    in_flight INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0    -- higher goes first (a later attempt before new work)
);
CREATE INDEX IF NOT EXISTS queue_jobs_ready ON queue_jobs (in_flight, label, seq);
CREATE TABLE IF NOT EXISTS queue_dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT,
    label TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    notified INTEGER NOT NULL DEFAULT 0,   -- on_dead_letter returned
    dead_at REAL NOT NULL
);
"""

TABLE = QueueTable(
    rows="queue_jobs",
    dead="queue_dead_letters",
    kept=("job_id", "label", "body", "deliveries", "priority"),
    dead_kept=("job_id", "label", "body"),
)


class LocalQueue(SqliteQueueFile):
    """Single-node ``JobPublisher`` + ``JobConsumer`` backed by SQLite at ``path``.

    Lifetime (``SqliteQueueFile``): ``start()`` opens the file (creating the
    tables) and starts the dispatcher; ``publish`` works once started;
    ``stop()`` ends it. Also an async context manager. With ``every_label``
    it takes and hands out requests of any ``runs_on`` label (``labels`` is
    then ignored).
    """

    what = "the local queue"
    schema = SCHEMA
    table = TABLE

    def __init__(
        self,
        path: str | Path,
        labels: Sequence[str],
        on_job: OnJob,
        on_dead_letter: OnDeadLetter,
        free_slots: int,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        every_label: bool = False,
    ) -> None:
        if free_slots < 0:
            raise ValueError("free_slots cannot be negative")
        super().__init__(path)
        self.labels = frozenset(validate_label(label) for label in labels)
        # Single node with the local driver: one process runs whatever runs_on says.
        self.every_label = every_label
        self.max_attempts = max_attempts
        self._on_job = on_job
        self._on_dead_letter = dead_letter_call(on_dead_letter)
        self._free_slots = free_slots
        self._paused: frozenset[str] = frozenset()
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def pause(self, grace: float = 30.0) -> None:
        """Hand out nothing more and give unsettled ``on_job`` calls ``grace`` s; publishing goes on.

        For an owner that stops consuming before it stops publishing (a node
        shutting down requeues its unfinished jobs). Calls still running after
        ``grace`` are cancelled; their rows are delivered again at the next start.
        """
        await self.set_free_slots(0)
        await finish_or_cancel(self._inflight, grace)

    async def set_free_slots(self, free_slots: int) -> None:
        if free_slots < 0:
            raise ValueError("free_slots cannot be negative")
        self._free_slots = free_slots
        self._wake.set()

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        """A queue file of a version before priorities gets the column (new work keeps 0)."""
        cursor = await db.execute("PRAGMA table_info(queue_jobs)")
        if "priority" not in {row[1] for row in await cursor.fetchall()}:
            await db.execute("ALTER TABLE queue_jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")

    async def set_paused_labels(self, labels: frozenset[str]) -> None:
        """Hand out no request of ``labels`` (again those of every label not named)."""
        self._paused = frozenset(labels)
        self._wake.set()

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = NEW_WORK) -> None:
        """Store ``requests`` durably (one transaction); unserved labels are dead-lettered.

        A higher ``priority`` is handed out first (``topology.ANOTHER_ATTEMPT``: ahead of new work).
        """
        rows = [(request.job_id, request.runs_on, encode_job_request(request)) for request in requests]
        now = time.time()
        async with self._transaction() as db:
            for job_id, label, body in rows:
                if self.every_label or label in self.labels:
                    await db.execute(
                        "INSERT INTO queue_jobs (job_id, label, body, enqueued_at, priority) VALUES (?, ?, ?, ?, ?)",
                        (job_id, label, body, now, priority),
                    )
                else:
                    reason = f"unroutable: this node serves no runs_on label {label!r}"
                    log.warning("job dead-lettered", extra={"fields": {"job_id": job_id, "reason": reason}})
                    await db.execute(
                        "INSERT INTO queue_dead_letters (job_id, label, body, reason, dead_at) VALUES (?, ?, ?, ?, ?)",
                        (job_id, label, body, reason, now),
                    )
        self._wake.set()

    async def dead_letters(self) -> list[tuple[str | None, str]]:
        """``(job_id, reason)`` of every dead letter, oldest first (for operators and tests)."""
        async with self._lock:
            cursor = await self._require_db().execute("SELECT job_id, reason FROM queue_dead_letters ORDER BY seq")
            return [(row[0], row[1]) for row in await cursor.fetchall()]

    def _running(self) -> set[asyncio.Task[None]]:
        return self._inflight

    async def _dispatch_once(self) -> None:
        await self._notify_dead_letters()
        await self._hand_out()

    async def _hand_out(self) -> None:
        room = self._free_slots - len(self._inflight)
        if room <= 0 or not (self.labels or self.every_label):
            return
        if self.every_label:
            labels, which = tuple(sorted(self._paused)), "label NOT IN"
        else:
            labels, which = tuple(sorted(self.labels - self._paused)), "label IN"
            if not labels:
                return
        async with self._transaction() as db:
            cursor = await db.execute(
                f"SELECT seq, job_id, body, attempts FROM queue_jobs WHERE in_flight = 0 "
                f"AND {which} ({','.join('?' * len(labels))}) ORDER BY priority DESC, seq LIMIT ?",
                (*labels, room),
            )
            rows = list(await cursor.fetchall())
            await db.executemany(
                "UPDATE queue_jobs SET in_flight = 1, deliveries = deliveries + 1 WHERE seq = ?",
                [(row[0],) for row in rows],
            )
        for seq, job_id, body, attempts in rows:
            task = asyncio.create_task(self._deliver(seq, job_id, body, attempts), name=f"deliver {job_id}")
            self._track(task, self._inflight)

    async def _deliver(self, seq: int, job_id: str, body: bytes, attempts: int) -> None:
        outcome = await handle_stored(lambda: self._on_job(decode_job_request(body)), attempts, self.max_attempts)
        await self._pause_after(outcome, job_id)
        if outcome.retry and not outcome.deferred:
            log.warning("local queue: on_job failed (attempt %d of %d): %s",
                        outcome.attempts, self.max_attempts, outcome.error)
        elif outcome.disposition is not None and outcome.disposition.action is Action.DEAD_LETTER:
            log.warning("job dead-lettered", extra={"fields": {"job_id": job_id, "reason": outcome.disposition.reason}})
        async with self._transaction() as db:
            await TABLE.settle(db, seq, outcome)

    async def _notify_dead_letters(self) -> None:
        async with self._lock:
            cursor = await self._require_db().execute(
                "SELECT seq, job_id, body, reason FROM queue_dead_letters WHERE notified = 0 ORDER BY seq"
            )
            rows = list(await cursor.fetchall())
        for seq, job_id, body, reason in rows:
            if job_id is None:
                job_id = job_id_in(body)
            try:
                await self._on_dead_letter(job_id, reason, request_in(body))
            except Exception as err:  # noqa: BLE001 - retried after a pause; the row stays
                log.error("local queue: on_dead_letter failed for %s (tried again shortly): %s", job_id, err)
                self._retry_later()
                continue
            self._outage.reset()
            async with self._transaction() as db:
                await db.execute("UPDATE queue_dead_letters SET notified = 1 WHERE seq = ?", (seq,))
