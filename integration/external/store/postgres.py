"""``ExternalStore`` in the integration's PostgreSQL database (shared by every integration node)."""

from __future__ import annotations

from integration.external.store.schema import schema
from integration.external.store.sql import SqlExternalStore
from integration.store.postgres import PostgresSeenStore

SCHEMA = schema("DOUBLE PRECISION")
SCHEMA_LOCK = 7007022  # nodes starting at once create the tables one after the other


class PostgresExternalStore(SqlExternalStore, PostgresSeenStore):
    """The pool and primitives of ``PostgresSeenStore``, with the out-of-tree CI tables."""

    async def open(self) -> None:
        await super().open()
        await self.add_tables(SCHEMA, SCHEMA_LOCK, "the out-of-tree CI tables")
