"""Greenness in the integration's SQLite file (a connection of its own, the same WAL file)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import aiosqlite

from integration.greenness.store.schema import schema
from integration.greenness.store.sql import SqlGreennessStore
from integration.store.sqlite import SqliteSeenStore

SCHEMA = schema("REAL")


class SqliteGreennessStore(SqlGreennessStore, SqliteSeenStore):
    """The connection and primitives of ``SqliteSeenStore``, with the greenness tables."""

    async def open(self) -> None:
        await super().open()
        await self.add_tables(SCHEMA, "the greenness tables")

    @contextlib.asynccontextmanager
    async def _gtransaction(self) -> AsyncIterator[_GTx]:
        async with self._transaction() as tx:
            yield _GTx(tx.db)


class _GTx:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, args: Sequence[object]) -> int:
        cursor = await self.db.execute(sql, args)
        return cursor.rowcount

    async def fetch(self, sql: str, args: Sequence[object]) -> list[tuple[object, ...]]:
        cursor = await self.db.execute(sql, args)
        return [tuple(row) for row in await cursor.fetchall()]
