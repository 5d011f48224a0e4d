"""Where the integration remembers things across restarts.

    SeenStore            interface (``contract``): dedupe claims with expiry, deferred builds, report records
    SqliteSeenStore      a file; the single-node default
    PostgresSeenStore    shared by several integration replicas (multi-host)
    open_store(spec)     picks one from a path or a postgresql:// DSN
"""

from integration.store.contract import BuildStart, DeferredBuild, ReportRecord, SeenStore
from integration.store.open import open_store
from integration.store.postgres import PostgresSeenStore
from integration.store.sqlite import SqliteSeenStore

__all__ = ["BuildStart", "DeferredBuild", "PostgresSeenStore", "ReportRecord", "SeenStore", "SqliteSeenStore",
           "open_store"]
