"""The SQLite file under the single-node queues: opening it and short, serialized transactions.

Both ``LocalQueue`` (jobs) and ``LocalEventBus`` (events) keep their rows in
a SQLite file that the single-node state store may share (WAL mode, so readers
never wait for the writer; a busy timeout for the rare writer overlap).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiosqlite

from common.queue.disposition import Action, HandlerOutcome
from common.queue.errors import QueueUnavailable


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
        """At start: rows handed out before a crash were never settled; deliver them again, one more failed attempt each."""
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
