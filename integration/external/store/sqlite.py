"""``ExternalStore`` in the integration's SQLite file (a connection of its own, the same WAL file)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from integration.external.store.schema import schema
from integration.external.store.sql import SqlExternalStore
from integration.store.sqlite import SqliteSeenStore

SCHEMA = schema("REAL")


class SqliteExternalStore(SqlExternalStore, SqliteSeenStore):
    """The connection and primitives of ``SqliteSeenStore``, with the out-of-tree CI tables.

    One statement at a time: the relay's sender, the poster and the results
    API share the connection, and a commit while another coroutine's
    ``UPDATE ... RETURNING`` still has rows to fetch fails with "SQL
    statements in progress".
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._one_at_a_time = asyncio.Lock()

    async def _execute(self, sql: str, args: Sequence[object]) -> int:
        async with self._one_at_a_time:
            return await super()._execute(sql, args)

    async def _fetch(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        async with self._one_at_a_time:
            return await super()._fetch(sql, args)

    async def open(self) -> None:
        await super().open()
        await self.add_tables(SCHEMA, "the out-of-tree CI tables")
