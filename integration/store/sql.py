"""The ``SeenStore`` operations once, as SQL that SQLite and PostgreSQL both run.

Statements are written with ``?`` placeholders; a back-end supplies two
primitives (run a statement and say how many rows it touched; run one and
return its rows) and the errors of its driver, which come out as
``StoreError`` naming what could not be done.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from integration.errors import StoreError
from integration.store.contract import BuildStart, DeferredBuild, ReportRecord
from integration.store.schedulesql import SCHEDULE_SCHEMA, ScheduleSql

# One statement: an expired claim is taken over, a live one is kept (1 row changed: claimed).
_CLAIM = (
    "INSERT INTO integration_claims (kind, key, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE integration_claims.expires_at <= ?"
)
_RELEASE = "DELETE FROM integration_claims WHERE kind = ? AND key = ?"
_FORGET = "DELETE FROM integration_deferred WHERE key = ?"


class Tx(Protocol):
    """Statements inside one transaction (``SqlSeenStore._transaction``)."""

    async def execute(self, sql: str, args: Sequence[object]) -> int: ...

_SCHEMA = """
CREATE TABLE IF NOT EXISTS integration_claims (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at {real} NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS integration_claims_expiry ON integration_claims (expires_at);
CREATE TABLE IF NOT EXISTS integration_reports (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    forge TEXT NOT NULL,
    external_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    updated_at {real} NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS integration_deferred (
    key TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_at {real} NOT NULL,
    next_at {real} NOT NULL,
    last_error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS integration_deferred_due ON integration_deferred (next_at);
CREATE TABLE IF NOT EXISTS integration_report_locks (
    job_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at {real} NOT NULL
);
"""


def schema(real: str) -> str:
    """The tables, with ``real`` as the type of the unix-time columns."""
    return (_SCHEMA + SCHEDULE_SCHEMA).format(real=real)


def numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` (PostgreSQL); the statements here have no ``?`` in literals."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


class SqlSeenStore(ScheduleSql, ABC):
    """``SeenStore`` on top of ``_execute`` and ``_fetch``; subclasses connect (``open``/``close``)."""

    # The driver's errors that mean "the store failed" (turned into StoreError).
    errors: tuple[type[BaseException], ...] = ()
    # Added to take_due's choice of rows (PostgreSQL: lock them, skip those another replica holds).
    lock_due: str = ""

    @abstractmethod
    async def _execute(self, sql: str, args: Sequence[object]) -> int:
        """Run one statement (committed); how many rows it inserted, changed or deleted."""

    @abstractmethod
    async def _fetch(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        """Run one statement (committed); its rows."""

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction: committed when the block ends, rolled back when it raises."""

    async def _run(self, what: str, sql: str, *args: object) -> int:
        try:
            return await self._execute(sql, args)
        except self.errors as err:
            raise StoreError(f"{what}: {err}") from err

    async def _rows(self, what: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
        try:
            return await self._fetch(sql, args)
        except self.errors as err:
            raise StoreError(f"{what}: {err}") from err

    async def claim(self, kind: str, key: str, ttl: float) -> bool:
        now = time.time()
        return await self._run(f"cannot record {kind} {key}", _CLAIM, kind, key, now + ttl, now) == 1

    async def release(self, kind: str, key: str) -> None:
        await self._run(f"cannot release {kind} {key}", _RELEASE, kind, key)

    async def purge_expired(self) -> int:
        return await self._run("cannot purge expired claims",
                               "DELETE FROM integration_claims WHERE expires_at <= ?", time.time())

    async def start_build(self, delivery_key: str, build_key: str, doc: str, ttl: float,
                          lease_until: float) -> BuildStart:
        now = time.time()
        try:
            async with self._transaction() as tx:
                if await tx.execute(_CLAIM, ("delivery", delivery_key, now + ttl, now)) != 1:
                    return BuildStart.DUPLICATE_DELIVERY
                if await tx.execute(_CLAIM, ("build", build_key, now + ttl, now)) != 1:
                    return BuildStart.DUPLICATE_BUILD
                # A row left by a build whose claim has expired since is replaced.
                await tx.execute(
                    "INSERT INTO integration_deferred (key, doc, attempts, first_at, next_at, last_error) "
                    "VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, attempts = 0, "
                    "first_at = excluded.first_at, next_at = excluded.next_at, last_error = excluded.last_error",
                    (build_key, doc, now, lease_until, "in progress"),
                )
                return BuildStart.STARTED
        except self.errors as err:
            raise StoreError(f"cannot record the build {build_key}: {err}") from err

    async def abandon_build(self, delivery_key: str, build_key: str) -> None:
        try:
            async with self._transaction() as tx:
                await tx.execute(_RELEASE, ("delivery", delivery_key))
                await tx.execute(_RELEASE, ("build", build_key))
                await tx.execute(_FORGET, (build_key,))
        except self.errors as err:
            raise StoreError(f"cannot release the build {build_key}: {err}") from err

    async def take_due(self, now: float, lease: float, limit: int) -> list[DeferredBuild]:
        # One statement: select and lease together, so two takers never share one.
        rows = await self._rows(
            "cannot read the deferred builds",
            "UPDATE integration_deferred SET next_at = ? WHERE key IN "
            f"(SELECT key FROM integration_deferred WHERE next_at <= ? ORDER BY next_at LIMIT ?{self.lock_due}) "
            "RETURNING key, doc, attempts, first_at, next_at, last_error",
            now + lease, now, limit,
        )
        return sorted((DeferredBuild.from_record(row) for row in rows), key=lambda d: d.first_at)

    async def reschedule(self, key: str, attempts: int, next_at: float, error: str) -> None:
        await self._run(
            f"cannot reschedule the build {key}",
            "UPDATE integration_deferred SET attempts = ?, next_at = ?, last_error = ? WHERE key = ?",
            attempts, next_at, error, key,
        )

    async def forget_deferred(self, key: str) -> None:
        await self._run(f"cannot drop the deferred build {key}", _FORGET, key)

    async def get_report(self, job_id: str, attempt: int) -> ReportRecord | None:
        rows = await self._rows(
            f"cannot read the report of job {job_id}",
            "SELECT job_id, attempt, forge, external_id, rank, updated_at FROM integration_reports "
            "WHERE job_id = ? AND attempt = ?",
            job_id, attempt,
        )
        return ReportRecord.from_record(rows[0]) if rows else None

    async def save_report(self, record: ReportRecord) -> None:
        # Never backwards: a slower writer of an older state changes nothing.
        await self._run(
            f"cannot save the report of job {record.job_id}",
            "INSERT INTO integration_reports (job_id, attempt, forge, external_id, rank, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, attempt) DO UPDATE SET "
            "forge = excluded.forge, external_id = excluded.external_id, rank = excluded.rank, "
            "updated_at = excluded.updated_at WHERE integration_reports.rank < excluded.rank",
            record.job_id, record.attempt, record.forge, record.external_id, record.rank, record.updated_at,
        )

    async def lock_report(self, job_id: str, holder: str, until: float) -> bool:
        changed = await self._run(
            f"cannot lock the reports of job {job_id}",
            "INSERT INTO integration_report_locks (job_id, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE integration_report_locks.expires_at <= ? OR integration_report_locks.holder = excluded.holder",
            job_id, holder, until, time.time(),
        )
        return changed == 1

    async def unlock_report(self, job_id: str, holder: str) -> None:
        await self._run(f"cannot unlock the reports of job {job_id}",
                        "DELETE FROM integration_report_locks WHERE job_id = ? AND holder = ?", job_id, holder)
