"""``ExternalStore`` in the integration's SQLite file (a connection of its own, the same WAL file)."""

from __future__ import annotations

import sqlite3

from integration.errors import StoreError
from integration.external.store.sql import SqlExternalStore, schema
from integration.store.sqlite import SqliteSeenStore

SCHEMA = schema("REAL")


class SqliteExternalStore(SqlExternalStore, SqliteSeenStore):
    """The connection and primitives of ``SqliteSeenStore``, with the out-of-tree CI tables."""

    async def open(self) -> None:
        await super().open()
        try:
            await self.db.executescript(SCHEMA)
            await self.db.commit()
        except sqlite3.Error as err:
            await self.close()
            raise StoreError(f"cannot create the out-of-tree CI tables in {self.path}: {err}") from err
