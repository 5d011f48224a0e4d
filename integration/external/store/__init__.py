"""Where out-of-tree CI keeps its state: the integration store's database, tables of its own.

    ExternalStore            interface (``contract``)
    SqlExternalStore         the SQL once (``sql``; the tables in ``schema``)
    SqliteExternalStore      the integration's SQLite file
    PostgresExternalStore    the integration's PostgreSQL database (every node shares it)
    open_external_store      picks one from the integration's ``store`` setting
"""

from integration.external.store.contract import ExternalStore
from integration.external.store.postgres import PostgresExternalStore
from integration.external.store.sqlite import SqliteExternalStore


def open_external_store(spec: str) -> ExternalStore:
    """A (not yet opened) store for the integration's ``store`` setting: a postgres DSN or a SQLite path."""
    if spec.startswith(("postgres://", "postgresql://")):
        return PostgresExternalStore(spec)
    return SqliteExternalStore(spec)


__all__ = ["ExternalStore", "PostgresExternalStore", "SqliteExternalStore", "open_external_store"]
