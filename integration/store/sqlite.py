"""``SeenStore`` in a SQLite file (aiosqlite); the single-node default."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from integration.errors import StoreError
from integration.store.sql import SqlSeenStore, schema

SCHEMA = schema("REAL")


async def _connect(path: Path) -> aiosqlite.Connection:
    """``aiosqlite.connect`` that, when the connect fails, returns only once its worker thread has ended.

    On a failed connect aiosqlite stops its worker thread with a callback on
    the current loop and does not wait for it; if the loop closes first, the
    thread dies with "Event loop is closed". Joining it here keeps the
    failure inside this call.
    """
    connection = aiosqlite.connect(path)
    try:
        return await connection
    except BaseException:
        thread = getattr(connection, "_thread", None)  # private: see the docstring
        if isinstance(thread, threading.Thread) and thread.ident is not None:
            await asyncio.to_thread(thread.join, 5.0)
            # let the thread's last callback run on this (still open) loop
            await asyncio.sleep(0)
        raise


class SqliteSeenStore(SqlSeenStore):
    """``SeenStore`` in the file at ``path`` (WAL mode; may share a file with other tables)."""

    errors = (sqlite3.Error,)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # One connection: a transaction must not take in (or commit) another caller's statements,
        # while single statements may interleave (a commit of one then commits the others too).
        self._access = _SharedOrAlone()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the integration store is not open")
        return self._db

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = await _connect(self.path)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open the integration store {self.path}: {err}") from err
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.executescript(SCHEMA)
            await db.commit()
        except BaseException as err:
            # An unclosed connection is stopped from its __del__, possibly once
            # the loop is closed: its worker thread then dies with "Event loop is closed".
            await db.close()
            if isinstance(err, sqlite3.Error):
                raise StoreError(f"cannot open the integration store {self.path}: {err}") from err
            raise
        self._db = db

    async def add_tables(self, schema: str, what: str) -> None:
        """Create a feature's tables (``schema``). Closes the store and raises ``StoreError`` on failure."""
        try:
            await self.db.executescript(schema)
            await self.db.commit()
        except sqlite3.Error as err:
            await self.close()
            raise StoreError(f"cannot create {what} in {self.path}: {err}") from err

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _execute(self, sql: str, args: Sequence[object]) -> int:
        async with self._access.shared():
            cursor = await self.db.execute(sql, args)
            await self.db.commit()
            return cursor.rowcount

    async def _fetch(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        async with self._access.shared():
            cursor = await self.db.execute(sql, args)
            rows = await cursor.fetchall()
            await self.db.commit()
            return [tuple(row) for row in rows]

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Tx]:
        async with self._access.alone():
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(db)
            except BaseException:
                await db.rollback()
                raise
            await db.commit()


class _SharedOrAlone:
    """Shared for single statements, alone for a transaction (which waiting statements let pass first)."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._shared = 0
        self._alone = False
        self._waiting = 0  # transactions waiting: new statements queue behind them

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._alone and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            async with self._changed:
                self._shared -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        async with self._changed:
            self._waiting += 1
            try:
                await self._changed.wait_for(lambda: not self._alone and not self._shared)
            finally:
                self._waiting -= 1
            self._alone = True
        try:
            yield
        finally:
            async with self._changed:
                self._alone = False
                self._changed.notify_all()


class _Tx:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, args: Sequence[object]) -> int:
        cursor = await self.db.execute(sql, args)
        return cursor.rowcount
