"""Where greenness keeps its state: the integration store's database, tables of its own.

    SqlGreennessStore        the SQL once (``sql``; the tables in ``schema``)
    SqliteGreennessStore     the integration's SQLite file
    PostgresGreennessStore   the integration's PostgreSQL database (every node shares it)
    open_greenness_store     picks one from the integration's ``store`` setting
"""

from integration.greenness.store.postgres import PostgresGreennessStore
from integration.greenness.store.records import Delivery
from integration.greenness.store.sql import SqlGreennessStore
from integration.greenness.store.sqlite import SqliteGreennessStore


def open_greenness_store(spec: str) -> SqlGreennessStore:
    """A (not yet opened) store for the integration's ``store`` setting: a postgres DSN or a SQLite path."""
    if spec.startswith(("postgres://", "postgresql://")):
        return PostgresGreennessStore(spec)
    return SqliteGreennessStore(spec)


__all__ = ["Delivery", "PostgresGreennessStore", "SqlGreennessStore", "SqliteGreennessStore", "open_greenness_store"]
