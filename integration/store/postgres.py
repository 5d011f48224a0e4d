"""``SeenStore`` in PostgreSQL (asyncpg pool); shared by integration replicas."""

from __future__ import annotations

import time

import asyncpg

from integration.errors import StoreError
from integration.store.contract import DeferredBuild, ReportRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS integration_claims (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS integration_claims_expiry ON integration_claims (expires_at);
CREATE TABLE IF NOT EXISTS integration_reports (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    forge TEXT NOT NULL,
    external_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS integration_deferred (
    key TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_at DOUBLE PRECISION NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    last_error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS integration_deferred_due ON integration_deferred (next_at);
"""

_ERRORS = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError)


class PostgresSeenStore:
    """``SeenStore`` in the database at ``dsn``."""

    def __init__(self, dsn: str, max_connections: int = 10) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the integration store is not open")
        return self._pool

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_connections)
            async with self._pool.acquire() as conn:
                # Several replicas may start at once: serialize the schema set-up.
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(7007001)")
                    await conn.execute(SCHEMA)
        except _ERRORS as err:
            raise StoreError(f"cannot open the integration store in PostgreSQL: {err}") from err

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def claim(self, kind: str, key: str, ttl: float) -> bool:
        now = time.time()
        try:
            result = await self.pool.execute(
                "INSERT INTO integration_claims (kind, key, expires_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (kind, key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE integration_claims.expires_at <= $4",
                kind, key, now + ttl, now,
            )
        except _ERRORS as err:
            raise StoreError(f"cannot record {kind} {key}: {err}") from err
        return result.endswith(" 1")

    async def release(self, kind: str, key: str) -> None:
        try:
            await self.pool.execute("DELETE FROM integration_claims WHERE kind = $1 AND key = $2", kind, key)
        except _ERRORS as err:
            raise StoreError(f"cannot release {kind} {key}: {err}") from err

    async def purge_expired(self) -> int:
        try:
            result = await self.pool.execute("DELETE FROM integration_claims WHERE expires_at <= $1", time.time())
        except _ERRORS as err:
            raise StoreError(f"cannot purge expired claims: {err}") from err
        return int(result.split()[-1])

    async def defer(self, key: str, doc: str, next_at: float, error: str) -> None:
        try:
            await self.pool.execute(
                "INSERT INTO integration_deferred (key, doc, attempts, first_at, next_at, last_error) "
                "VALUES ($1, $2, 0, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
                key, doc, time.time(), next_at, error,
            )
        except _ERRORS as err:
            raise StoreError(f"cannot keep the build {key} for a retry: {err}") from err

    async def take_due(self, now: float, lease: float, limit: int) -> list[DeferredBuild]:
        try:
            # SKIP LOCKED: replicas taking at the same moment get different builds.
            rows = await self.pool.fetch(
                "UPDATE integration_deferred SET next_at = $1 WHERE key IN "
                "(SELECT key FROM integration_deferred WHERE next_at <= $2 ORDER BY next_at LIMIT $3 "
                "FOR UPDATE SKIP LOCKED) "
                "RETURNING key, doc, attempts, first_at, next_at, last_error",
                now + lease, now, limit,
            )
        except _ERRORS as err:
            raise StoreError(f"cannot read the deferred builds: {err}") from err
        return sorted((DeferredBuild.from_record(tuple(row)) for row in rows), key=lambda d: d.first_at)

    async def reschedule(self, key: str, attempts: int, next_at: float, error: str) -> None:
        try:
            await self.pool.execute(
                "UPDATE integration_deferred SET attempts = $1, next_at = $2, last_error = $3 WHERE key = $4",
                attempts, next_at, error, key,
            )
        except _ERRORS as err:
            raise StoreError(f"cannot reschedule the build {key}: {err}") from err

    async def forget_deferred(self, key: str) -> None:
        try:
            await self.pool.execute("DELETE FROM integration_deferred WHERE key = $1", key)
        except _ERRORS as err:
            raise StoreError(f"cannot drop the deferred build {key}: {err}") from err

    async def get_report(self, job_id: str, attempt: int) -> ReportRecord | None:
        try:
            row = await self.pool.fetchrow(
                "SELECT job_id, attempt, forge, external_id, rank, updated_at FROM integration_reports "
                "WHERE job_id = $1 AND attempt = $2",
                job_id, attempt,
            )
        except _ERRORS as err:
            raise StoreError(f"cannot read the report of job {job_id}: {err}") from err
        return ReportRecord.from_record(tuple(row)) if row else None

    async def save_report(self, record: ReportRecord) -> None:
        try:
            await self.pool.execute(
                "INSERT INTO integration_reports (job_id, attempt, forge, external_id, rank, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, attempt) DO UPDATE SET "
                "forge = excluded.forge, external_id = excluded.external_id, rank = excluded.rank, "
                "updated_at = excluded.updated_at",
                record.job_id, record.attempt, record.forge, record.external_id, record.rank, record.updated_at,
            )
        except _ERRORS as err:
            raise StoreError(f"cannot save the report of job {record.job_id}: {err}") from err
