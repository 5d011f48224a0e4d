"""``SeenStore`` in a SQLite file (aiosqlite); the single-node default."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import aiosqlite

from integration.errors import StoreError
from integration.store.contract import DeferredBuild, ReportRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS integration_claims (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS integration_claims_expiry ON integration_claims (expires_at);
CREATE TABLE IF NOT EXISTS integration_reports (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    forge TEXT NOT NULL,
    external_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS integration_deferred (
    key TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_at REAL NOT NULL,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS integration_deferred_due ON integration_deferred (next_at);
"""


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


class SqliteSeenStore:
    """``SeenStore`` in the file at ``path`` (WAL mode; may share a file with other tables)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

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

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def claim(self, kind: str, key: str, ttl: float) -> bool:
        now = time.time()
        try:
            # One statement: an expired claim is taken over, a live one is kept.
            cursor = await self.db.execute(
                "INSERT INTO integration_claims (kind, key, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE integration_claims.expires_at <= ?",
                (kind, key, now + ttl, now),
            )
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot record {kind} {key}: {err}") from err
        return cursor.rowcount == 1

    async def release(self, kind: str, key: str) -> None:
        try:
            await self.db.execute("DELETE FROM integration_claims WHERE kind = ? AND key = ?", (kind, key))
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot release {kind} {key}: {err}") from err

    async def purge_expired(self) -> int:
        try:
            cursor = await self.db.execute("DELETE FROM integration_claims WHERE expires_at <= ?", (time.time(),))
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot purge expired claims: {err}") from err
        return cursor.rowcount

    async def defer(self, key: str, doc: str, next_at: float, error: str) -> None:
        try:
            await self.db.execute(
                "INSERT INTO integration_deferred (key, doc, attempts, first_at, next_at, last_error) "
                "VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (key, doc, time.time(), next_at, error),
            )
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot keep the build {key} for a retry: {err}") from err

    async def take_due(self, now: float, lease: float, limit: int) -> list[DeferredBuild]:
        try:
            # One statement: select and lease together, so two takers never share one.
            cursor = await self.db.execute(
                "UPDATE integration_deferred SET next_at = ? WHERE key IN "
                "(SELECT key FROM integration_deferred WHERE next_at <= ? ORDER BY next_at LIMIT ?) "
                "RETURNING key, doc, attempts, first_at, next_at, last_error",
                (now + lease, now, limit),
            )
            rows = await cursor.fetchall()
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the deferred builds: {err}") from err
        return sorted((DeferredBuild.from_record(tuple(row)) for row in rows), key=lambda d: d.first_at)

    async def reschedule(self, key: str, attempts: int, next_at: float, error: str) -> None:
        try:
            await self.db.execute(
                "UPDATE integration_deferred SET attempts = ?, next_at = ?, last_error = ? WHERE key = ?",
                (attempts, next_at, error, key),
            )
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot reschedule the build {key}: {err}") from err

    async def forget_deferred(self, key: str) -> None:
        try:
            await self.db.execute("DELETE FROM integration_deferred WHERE key = ?", (key,))
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot drop the deferred build {key}: {err}") from err

    async def get_report(self, job_id: str, attempt: int) -> ReportRecord | None:
        try:
            cursor = await self.db.execute(
                "SELECT job_id, attempt, forge, external_id, rank, updated_at FROM integration_reports "
                "WHERE job_id = ? AND attempt = ?",
                (job_id, attempt),
            )
            row = await cursor.fetchone()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the report of job {job_id}: {err}") from err
        return ReportRecord.from_record(tuple(row)) if row else None

    async def save_report(self, record: ReportRecord) -> None:
        try:
            await self.db.execute(
                "INSERT INTO integration_reports (job_id, attempt, forge, external_id, rank, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, attempt) DO UPDATE SET "
                "forge = excluded.forge, external_id = excluded.external_id, rank = excluded.rank, "
                "updated_at = excluded.updated_at",
                (record.job_id, record.attempt, record.forge, record.external_id, record.rank, record.updated_at),
            )
            await self.db.commit()
        except sqlite3.Error as err:
            raise StoreError(f"cannot save the report of job {record.job_id}: {err}") from err
