"""Choosing the store back-end from one setting."""

from __future__ import annotations

from integration.store.contract import SeenStore
from integration.store.postgres import PostgresSeenStore
from integration.store.sqlite import SqliteSeenStore


def open_store(spec: str) -> SeenStore:
    """A (not yet opened) store: PostgreSQL for ``postgres://``/``postgresql://`` DSNs, else a SQLite file path."""
    if spec.startswith(("postgres://", "postgresql://")):
        return PostgresSeenStore(spec)
    return SqliteSeenStore(spec)
