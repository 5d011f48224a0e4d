"""The small seam between the store's logic and a database driver.

``SqlStore`` holds all the store's rules and speaks one SQL text to a
``Backend``: ``$1``-style parameters plus two dialect tokens, ``{now}`` (the
database clock, epoch seconds) and ``{skip_locked}`` (row locks for the
requeue sweep). Each back-end renders them for its database and translates
its driver's errors into ``StoreError`` at this boundary (integrity errors
into ``ConstraintViolation``, the rest into ``StoreUnavailable``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from orchestrator.store.records import Row


class Tx(abc.ABC):
    """One connection inside one transaction; lives only inside ``Backend.transaction``."""

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        """Run ``sql`` and return every row (``RETURNING`` rows for writes)."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> None:
        """Run ``sql`` for its effect."""

    @abc.abstractmethod
    async def script(self, sql: str) -> None:
        """Run a migration file: several statements, no parameters."""


class Backend(abc.ABC):
    """A database the store runs on. Lifetime: ``open()`` once, then transactions, then ``close()``."""

    #: ``{now}``: the database's clock as epoch seconds (one clock for every host).
    now_sql: str
    #: ``{skip_locked}``: lock the swept attempt rows (alias ``a``), skipping rows another sweeper holds.
    skip_locked_sql: str
    #: which migrations/<dialect>/ set applies.
    dialect: str
    #: INSERT ... RETURNING inside WITH (PostgreSQL): lets a multi-row write be one statement.
    writable_cte: bool = False

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the database is, for messages (never includes a password)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect; raises ``StoreUnavailable`` naming the database when it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; idempotent."""

    @abc.abstractmethod
    async def run(self, sql: str, *args: Any) -> Sequence[Row]:
        """Run ONE statement on its own (autocommit) and return its rows.

        A single statement is atomic by itself; skipping BEGIN/COMMIT saves
        two round trips, which is most of the cost of a state change.
        """

    @abc.abstractmethod
    def transaction(self, write: bool = True) -> AbstractAsyncContextManager[Tx]:
        """A transaction that commits when the block ends normally and rolls back otherwise.

        ``write=True`` transactions are serialised against other writers where
        the database needs it (SQLite: ``BEGIN IMMEDIATE``).
        """

    @abc.abstractmethod
    async def lock_migrations(self, tx: Tx) -> None:
        """Serialise concurrent migrators for the rest of ``tx``."""
