"""Greenness in the integration's PostgreSQL database (shared by every integration node)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg

from integration.greenness.store.schema import schema
from integration.greenness.store.sql import SqlGreennessStore
from integration.store.postgres import PostgresSeenStore
from integration.store.sql import numbered

SCHEMA = schema("DOUBLE PRECISION")
SCHEMA_LOCK = 7007023  # nodes starting at once create the tables one after the other


class PostgresGreennessStore(SqlGreennessStore, PostgresSeenStore):
    """The pool and primitives of ``PostgresSeenStore``, with the greenness tables."""

    lock_row = " FOR UPDATE"

    async def open(self) -> None:
        await super().open()
        await self.add_tables(SCHEMA, SCHEMA_LOCK, "the greenness tables")

    @contextlib.asynccontextmanager
    async def _gtransaction(self) -> AsyncIterator[_GTx]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield _GTx(conn)


class _GTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, args: Sequence[object]) -> int:
        status = await self.conn.execute(numbered(sql), *args)
        return int(status.split()[-1])

    async def fetch(self, sql: str, args: Sequence[object]) -> list[tuple[object, ...]]:
        return [tuple(row) for row in await self.conn.fetch(numbered(sql), *args)]
