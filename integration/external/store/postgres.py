"""``ExternalStore`` in the integration's PostgreSQL database (shared by every integration node)."""

from __future__ import annotations

from integration.errors import StoreError
from integration.external.store.schema import schema
from integration.external.store.sql import SqlExternalStore
from integration.store.postgres import PostgresSeenStore

SCHEMA = schema("DOUBLE PRECISION")
SCHEMA_LOCK = 7007022  # nodes starting at once create the tables one after the other


class PostgresExternalStore(SqlExternalStore, PostgresSeenStore):
    """The pool and primitives of ``PostgresSeenStore``, with the out-of-tree CI tables."""

    async def open(self) -> None:
        await super().open()
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
                    await conn.execute(SCHEMA)
        except self.errors as err:
            await self.close()
            raise StoreError(f"cannot create the out-of-tree CI tables in PostgreSQL: {err}") from err
