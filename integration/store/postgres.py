"""``SeenStore`` in PostgreSQL (asyncpg pool); shared by integration replicas."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from integration.errors import StoreError
from integration.store.sql import SqlSeenStore, numbered, schema

SCHEMA = schema("DOUBLE PRECISION")

_ERRORS = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError)


class PostgresSeenStore(SqlSeenStore):
    """``SeenStore`` in the database at ``dsn``."""

    errors = _ERRORS
    # Replicas taking at the same moment get different builds.
    lock_due = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str, max_connections: int = 10) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the integration store is not open")
        return self._pool

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_connections)
            async with self._pool.acquire() as conn:
                # Several replicas may start at once: serialize the schema set-up.
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(7007001)")
                    await conn.execute(SCHEMA)
        except _ERRORS as err:
            raise StoreError(f"cannot open the integration store in PostgreSQL: {err}") from err

    async def add_tables(self, schema: str, lock: int, what: str) -> None:
        """Create a feature's tables (``schema``) under its advisory ``lock``: replicas starting at
        once create them one after the other. Closes the store and raises ``StoreError`` on failure."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SELECT pg_advisory_xact_lock({int(lock)})")
                await conn.execute(schema)
        except _ERRORS as err:
            await self.close()
            raise StoreError(f"cannot create {what} in PostgreSQL: {err}") from err

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _execute(self, sql: str, args: Sequence[object]) -> int:
        status = await self.pool.execute(numbered(sql), *args)  # "INSERT 0 1", "DELETE 3", ...
        return int(status.split()[-1])

    async def _fetch(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.pool.fetch(numbered(sql), *args)]

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Tx]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield _Tx(conn)


class _Tx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, args: Sequence[object]) -> int:
        status = await self.conn.execute(numbered(sql), *args)
        return int(status.split()[-1])
