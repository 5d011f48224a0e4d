"""The SQLite file under the single-node queues: opening it and short, serialized transactions.

Both ``LocalQueue`` (jobs) and ``LocalEventBus`` (events) keep their rows in
a SQLite file that the single-node state store may share (WAL mode, so readers
never wait for the writer; a busy timeout for the rare writer overlap).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import TracebackType

import aiosqlite

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
