"""The SQLite back-end: the embedded single-node default.

One connection per store, so one writer per store; write transactions start
with ``BEGIN IMMEDIATE`` so that several stores (or processes) sharing the file
serialise on SQLite's write lock instead of failing to upgrade a read lock.
WAL lets readers of other connections proceed meanwhile. The file may be
shared with the single-node queue (its tables have other names).
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator.store.backend import Backend, Tx
from orchestrator.store.errors import ConstraintViolation, StoreError, StoreUnavailable
from orchestrator.store.records import Row
from orchestrator.store.sqlstore import SqlStore

MEMORY = ":memory:"
_PARAM = re.compile(r"\$(\d+)")
# julianday has millisecond resolution; the offset turns days since -4713 into epoch seconds.
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


@functools.lru_cache(maxsize=256)
def _to_sqlite(sql: str) -> str:
    """``$1`` -> ``?1`` (SQLite's numbered parameters) and dialect tokens filled in."""
    return _PARAM.sub(r"?\1", sql.replace("{now}", _NOW).replace("{skip_locked}", ""))


class _SqliteTx(Tx):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        async with self._conn.execute(_to_sqlite(sql), args) as cursor:
            return list(await cursor.fetchall())

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._conn.execute(_to_sqlite(sql), args):
            pass

    async def script(self, sql: str) -> None:
        # executescript() would COMMIT first; run statement by statement inside our transaction.
        for statement in split_statements(sql):
            await self.execute(statement)


def split_statements(sql: str) -> list[str]:
    """Split an SQL file into complete statements (comments and blank lines dropped between them)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


class SqliteBackend(Backend):
    """SQLite at ``path`` (``":memory:"`` for a private in-memory database)."""

    now_sql = _NOW
    skip_locked_sql = ""  # BEGIN IMMEDIATE already makes the sweep the only writer
    dialect = "sqlite"

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._conn: aiosqlite.Connection | None = None
        # One connection, one transaction at a time: coroutines of this store queue here.
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return "SQLite in memory" if self.path == MEMORY else f"SQLite database {self.path}"

    async def open(self) -> None:
        if self.path != MEMORY:
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise StoreUnavailable(f"cannot open {self.where}: directory {parent} does not exist")
        try:
            conn = await aiosqlite.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except (sqlite3.Error, OSError) as err:
            raise StoreUnavailable(f"cannot open {self.where}: {err}") from err
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            if self.path != MEMORY:
                await self._enable_wal(conn)
            # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the last commits).
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as err:
            await conn.close()
            raise StoreUnavailable(f"cannot open {self.where}: {err}") from err
        self._conn = conn

    async def _enable_wal(self, conn: aiosqlite.Connection) -> None:
        # Switching to WAL needs an exclusive lock, and SQLite answers "database is locked"
        # at once (without its busy handler) while another opener holds it, so retry here.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                await conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or loop.time() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _translate(self, err: sqlite3.Error, doing: str = "failed") -> StoreError:
        if isinstance(err, sqlite3.IntegrityError):
            return ConstraintViolation(f"{self.where} refused a write: {err}")
        if isinstance(err, sqlite3.OperationalError):  # locked, disk I/O, cannot open: the file, not the SQL
            return StoreUnavailable(f"{self.where} {doing}: {err}")
        return StoreError(f"{self.where} {doing}: {err}")

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError(f"{self.where} is not open")
        return self._conn

    async def run(self, sql: str, *args: Any) -> Sequence[Row]:
        conn = self._connection()
        async with self._lock:
            try:
                return await _SqliteTx(conn).fetch(sql, *args)
            except sqlite3.Error as err:
                raise self._translate(err) from err

    @asynccontextmanager
    async def transaction(self, write: bool = True) -> AsyncIterator[Tx]:
        conn = self._connection()
        async with self._lock:
            try:
                await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as err:
                raise self._translate(err) from err
            try:
                yield _SqliteTx(conn)
            except BaseException as err:
                try:
                    await conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error is the one to report
                if isinstance(err, sqlite3.Error):
                    raise self._translate(err) from err
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.Error as err:
                raise self._translate(err, "failed to commit") from err

    async def lock_migrations(self, tx: Tx) -> None:
        """Nothing to do: migrations run in a ``BEGIN IMMEDIATE`` transaction, which excludes other writers."""


class SqliteStore(SqlStore):
    """The state store in SQLite: ``SqliteStore("/var/lib/solstice/state.db")`` or ``SqliteStore(":memory:")``."""

    def __init__(self, path: str | Path, host_stale_after: float = 30.0, busy_timeout: float = 30.0) -> None:
        super().__init__(SqliteBackend(path, busy_timeout=busy_timeout), host_stale_after=host_stale_after)
