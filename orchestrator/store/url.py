"""``open_store(url)``: the store a URL names, opened for the duration of a block.

    sqlite:///abs/path/state.db    an absolute path
    sqlite:relative/state.db       relative to the working directory
    sqlite::memory:                a private in-memory database (tests)
    postgresql://user@host:5432/db (also postgres://) - any asyncpg DSN
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.store.errors import InvalidStoreUrl
from orchestrator.store.interface import Store
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.sqlite import MEMORY, SqliteStore


def store_for_url(url: str, host_stale_after: float = 30.0, pool_size: int = 10) -> Store:
    """An unopened store for ``url`` (see the module docstring); ``InvalidStoreUrl`` otherwise."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, host_stale_after=host_stale_after, pool_size=pool_size)
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:"):]
        if rest.startswith("//"):
            # sqlite:///abs/path: the authority is empty and the path absolute
            # (SQLAlchemy's four-slash sqlite:////abs/path means the same).
            path = rest[2:]
            if path.startswith("/"):
                path = "/" + path.lstrip("/")
            else:
                raise InvalidStoreUrl(
                    f"store URL {url!r}: use sqlite:///absolute/path.db or sqlite:relative/path.db"
                )
        else:
            path = rest
        if path in ("", ":memory:"):
            if path == "":
                raise InvalidStoreUrl(f"store URL {url!r} names no database file")
            path = MEMORY
        return SqliteStore(path, host_stale_after=host_stale_after)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise InvalidStoreUrl(
        f"store URL scheme {scheme!r} is not supported; use sqlite:///path/state.db or postgresql://host/db"
    )


@asynccontextmanager
async def open_store(url: str, host_stale_after: float = 30.0, pool_size: int = 10) -> AsyncIterator[Store]:
    """Open the store ``url`` names (applying migrations) and close it when the block ends."""
    store = store_for_url(url, host_stale_after=host_stale_after, pool_size=pool_size)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
