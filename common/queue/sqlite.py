"""The SQLite file under the single-node queues: opening it and short, serialized transactions.

Both ``LocalQueue`` (jobs) and ``LocalEventBus`` (events) keep their rows in
a SQLite file that the single-node state store may share (WAL mode, so readers
never wait for the writer; a busy timeout for the rare writer overlap). They
share their lifetime (``SqliteQueueFile``: open, dispatch, stop with grace) and
how a delivery settles on their rows (``QueueTable``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import aiosqlite

from common.lifecycle import StartStop
from common.queue.disposition import Action, HandlerOutcome, OutagePause
from common.queue.errors import QueueError, QueueUnavailable
from common.queue.tasks import finish_or_cancel, pause

log = logging.getLogger(__name__)


async def open_queue_db(path: Path, schema: str) -> aiosqlite.Connection:
    """Open ``path`` in WAL mode and create ``schema``; ``QueueUnavailable`` on failure."""
    db: aiosqlite.Connection | None = None
    try:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA busy_timeout=10000")
        await db.executescript(schema)
        await db.commit()
    except (sqlite3.Error, OSError) as err:
        if db is not None:
            await db.close()
        raise QueueUnavailable(f"cannot open the queue file {path}: {err}") from err
    return db


class Transaction:
    """``async with``: take ``lock``, then commit on success or roll back on error.

    One connection is shared by a queue's tasks, so the lock keeps their
    statements from interleaving inside one transaction. SQLite errors come
    out as ``QueueUnavailable`` naming the file.
    """

    def __init__(self, lock: asyncio.Lock, db: aiosqlite.Connection, path: Path) -> None:
        self._lock = lock
        self._db = db
        self._path = path

    async def __aenter__(self) -> aiosqlite.Connection:
        await self._lock.acquire()
        return self._db

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                await self._db.commit()
            else:
                await self._db.rollback()
        except sqlite3.Error as err:
            raise QueueUnavailable(f"the queue file {self._path} could not be written: {err}") from err
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise QueueUnavailable(f"the queue file {self._path} could not be written: {exc}") from exc


@dataclass(frozen=True)
class QueueTable:
    """The rows of one SQLite queue and its dead-letter table, and how a delivery settles on them.

    ``rows`` has ``seq`` (the order), ``attempts`` (failed handler calls so
    far), ``in_flight`` and ``enqueued_at``; a put-back row keeps the columns
    named in ``kept``. ``dead`` has ``reason`` and ``dead_at`` and receives the
    columns named in ``dead_kept``. Table and column names are ours, never input.
    """

    rows: str
    dead: str
    kept: tuple[str, ...]
    dead_kept: tuple[str, ...]

    async def redeliver_unsettled(self, db: aiosqlite.Connection) -> None:
        """At start: rows handed out before a crash were never settled; deliver them again,
        one more failed attempt each."""
        await db.execute(f"UPDATE {self.rows} SET in_flight = 0, attempts = attempts + 1 WHERE in_flight = 1")

    async def settle(self, db: aiosqlite.Connection, seq: int, outcome: HandlerOutcome) -> None:
        """Apply ``outcome`` to row ``seq``: delete it, put it back, or move it to the dead letters."""
        disposition = outcome.disposition
        if disposition is None or disposition.action is Action.REQUEUE:
            await self.put_back(db, seq, outcome.attempts)
            return
        if disposition.action is Action.DEAD_LETTER:
            columns = ", ".join(self.dead_kept)
            await db.execute(
                f"INSERT INTO {self.dead} ({columns}, reason, dead_at) "
                f"SELECT {columns}, ?, ? FROM {self.rows} WHERE seq = ?",
                (disposition.reason, time.time(), seq),
            )
        await db.execute(f"DELETE FROM {self.rows} WHERE seq = ?", (seq,))

    async def put_back(self, db: aiosqlite.Connection, seq: int, attempts: int) -> None:
        """Move row ``seq`` to the end of the queue with ``attempts``.

        As on RabbitMQ: a message that is requeued or keeps failing must not
        hold up the ones behind it.
        """
        columns = ", ".join(self.kept)
        await db.execute(
            f"INSERT INTO {self.rows} ({columns}, attempts, enqueued_at) "
            f"SELECT {columns}, ?, enqueued_at FROM {self.rows} WHERE seq = ?",
            (attempts, seq),
        )
        await db.execute(f"DELETE FROM {self.rows} WHERE seq = ?", (seq,))


class SqliteQueueFile(StartStop):
    """The lifetime both SQLite queues share: a file, a dispatcher task, handler tasks.

    ``start()`` opens the file (creating ``schema``), puts back what a crash
    left handed out (``table.redeliver_unsettled``), lets the subclass prepare
    in the same transaction (``_prepare``) and starts the dispatcher, which
    calls ``_dispatch_once`` whenever woken (``_wake``) until ``stop()``.
    ``stop(grace)`` ends the dispatcher, gives the running handler tasks
    (``_running``) ``grace`` s, cancels the rest (their rows are delivered
    again on the next start) and closes. Also an async context manager.

    A handler that met an outage is put back after ``_pause_after`` (as on
    RabbitMQ: a pause growing while outages go on, the attempts unchanged);
    work the dispatcher could not finish for an outage is tried again after
    such a pause too (``_retry_later``), not only when something wakes it.
    """

    what: ClassVar[str]  # "the local queue": names it in errors and logs
    schema: ClassVar[str]
    table: ClassVar[QueueTable]

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on the shared connection
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()  # ends outage pauses early
        self._outage = OutagePause()
        self._retry_in: float | None = None  # set by _retry_later: wake the dispatcher after this long

    async def start(self) -> None:
        if self._db is not None:
            raise QueueError(f"{self.what} was already started; create a new one")
        self._db = await open_queue_db(self.path, self.schema)
        async with self._transaction() as db:
            await self.table.redeliver_unsettled(db)
            await self._prepare(db)
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"{self.what} dispatcher")

    async def stop(self, grace: float = 30.0) -> None:
        """Stop handing out, give running handlers ``grace`` s, then close.

        Handlers still running after that are cancelled; their rows stay and
        are delivered again on the next start.
        """
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        if self._dispatcher is not None:
            await self._dispatcher
            self._dispatcher = None
        await finish_or_cancel(self._running(), grace)
        if self._db is not None:
            await self._db.close()

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        """At start, in the transaction that puts back unsettled rows."""

    def _running(self) -> Iterable[asyncio.Task[None]]:
        raise NotImplementedError

    async def _dispatch_once(self) -> None:
        raise NotImplementedError

    def _require_db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise QueueError(f"{self.what} is not started")
        return self._db

    def _transaction(self) -> Transaction:
        return Transaction(self._lock, self._require_db(), self.path)

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._retry_in = None
            try:
                await self._dispatch_once()
            except QueueUnavailable as err:
                log.error("%s: %s", self.what, err)
                self._retry_later()
            if self._retry_in is None:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._retry_in)
                except TimeoutError:
                    pass

    def _retry_later(self) -> None:
        """Have the dispatcher run again after an outage pause even if nothing wakes it."""
        self._retry_in = self._outage.next_delay()

    async def _pause_after(self, outcome: HandlerOutcome, what: str) -> None:
        """After a handler call: if it met an outage, log it and pause before its row is put back."""
        self._outage.note(outcome)
        if outcome.deferred:
            delay = self._outage.next_delay()
            log.warning("%s: %s: %s; retrying in %.1fs (an outage: not counted as an attempt)",
                        self.what, what, outcome.error, delay)
            await pause(delay, self._stopped)

    def _track(self, task: asyncio.Task[None], running: set[asyncio.Task[None]]) -> None:
        """Count ``task`` in ``running`` until it ends; then look for more work."""
        running.add(task)

        def ended(task: asyncio.Task[None]) -> None:
            running.discard(task)
            self._wake.set()
            if not task.cancelled() and task.exception() is not None:
                log.error("%s: delivery failed", self.what, exc_info=task.exception())

        task.add_done_callback(ended)
