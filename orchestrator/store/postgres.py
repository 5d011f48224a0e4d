"""The PostgreSQL back-end (asyncpg pool): the multi-host store.

Every operation is one transaction on one pooled connection at READ
COMMITTED. Races between hosts are settled by the database: conditional
``UPDATE ... WHERE state = ...`` (a second updater blocks on the row lock,
re-checks the condition and finds it false) and, for the lapsed-host sweep,
``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent sweepers split the work.
Times come from the database clock, so hosts with skewed clocks agree on
heartbeat ages.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from orchestrator.store.backend import Backend, Tx
from orchestrator.store.errors import ConstraintViolation, StoreError, StoreUnavailable
from orchestrator.store.records import Row
from orchestrator.store.sqlstore import SqlStore

_NOW = "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"
_SKIP_LOCKED = " FOR UPDATE OF a SKIP LOCKED"
# pg_advisory_xact_lock key shared by every Solstice migrator: "Solstice" in ASCII.
MIGRATION_LOCK = 0x536F6C7374696365
# What asyncpg raises when the server or the network goes away.
_CONNECTION_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)
# SQLSTATE classes of a server that cannot serve now, whatever the statement: connection
# exception, transaction rollback (serialization, deadlock), insufficient resources,
# operator intervention (shutting down, starting up, cancelled), system error (I/O).
_OUTAGE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo.

    The store never changes session state (no SET, LISTEN, cursors or
    session-level locks), so asyncpg's default reset query would be one more
    round trip per operation for nothing. asyncpg still rolls back any
    transaction left open before calling this.
    """


@functools.lru_cache(maxsize=256)
def _render(sql: str) -> str:
    return sql.replace("{now}", _NOW).replace("{skip_locked}", _SKIP_LOCKED)


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` of a DSN, without user or password (for messages)."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "(unparsable PostgreSQL URL)"
    database = parts.path.lstrip("/") or (parts.username or "postgres")
    return f"{host}:{port}/{database}"


class _PgTx(Tx):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        rows: Sequence[Row] = await self._conn.fetch(_render(sql), *args)
        return rows

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(_render(sql), *args)

    async def script(self, sql: str) -> None:
        await self._conn.execute(sql)  # no arguments: the simple protocol runs every statement


class PostgresBackend(Backend):
    """PostgreSQL at ``dsn`` through a pool of at most ``pool_size`` connections."""

    now_sql = _NOW
    skip_locked_sql = _SKIP_LOCKED
    writable_cte = True
    dialect = "postgres"

    def __init__(self, dsn: str, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None

    @property
    def where(self) -> str:
        return f"PostgreSQL at {describe_dsn(self.dsn)}"

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout,
                reset=_keep_session,
            )
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as err:
            raise StoreUnavailable(f"cannot reach {self.where}: {err or type(err).__name__}") from err
        except ValueError as err:  # asyncpg's DSN parser
            raise StoreUnavailable(f"cannot use {self.where}: {err}") from err

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _pool_or_fail(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"{self.where} is not open")
        return self._pool

    def _translate(self, err: BaseException) -> StoreError:
        if isinstance(err, asyncpg.IntegrityConstraintViolationError):
            return ConstraintViolation(f"{self.where} refused a write: {err}")
        if isinstance(err, asyncpg.PostgresError) and not isinstance(err, asyncpg.PostgresConnectionError):
            if (getattr(err, "sqlstate", None) or "")[:2] in _OUTAGE_CLASSES:
                return StoreUnavailable(f"{self.where} cannot serve now: {err}")
            return StoreError(f"{self.where} failed: {err}")  # the statement itself: retrying will not help
        return StoreUnavailable(f"lost the connection to {self.where}: {err or type(err).__name__}")

    async def run(self, sql: str, *args: Any) -> Sequence[Row]:
        pool = self._pool_or_fail()
        try:
            async with pool.acquire() as conn:
                rows: Sequence[Row] = await conn.fetch(_render(sql), *args)
                return rows
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as err:
            raise self._translate(err) from err

    @asynccontextmanager
    async def transaction(self, write: bool = True) -> AsyncIterator[Tx]:
        pool = self._pool_or_fail()
        try:
            async with pool.acquire() as conn, conn.transaction():
                yield _PgTx(conn)
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as err:
            raise self._translate(err) from err

    async def lock_migrations(self, tx: Tx) -> None:
        # Held until the migration transaction ends: concurrent openers run one after another.
        await tx.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)


class PostgresStore(SqlStore):
    """The state store in PostgreSQL: ``PostgresStore("postgresql://user@host/db")``."""

    def __init__(self, dsn: str, host_stale_after: float = 30.0, pool_size: int = 10) -> None:
        super().__init__(PostgresBackend(dsn, pool_size=pool_size), host_stale_after=host_stale_after)
