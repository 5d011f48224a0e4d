"""``SqlLogArchive``: the log archive in the state store's database (migration 008).

``log_archives`` says per attempt how far its log is archived and whether it
is complete; ``log_chunks`` holds the lines, zstd-compressed, keyed by
(job, attempt, first sequence). An append is one transaction whose
conditional ``UPDATE ... WHERE lines = <what the chunk continues>`` decides
(two nodes shipping the same attempt cannot interleave chunks); the chunk
row goes in with it. With an ``ObjectStore`` the chunk's bytes are put there
first (under a key naming its first and last sequence, so a writer that loses
the race never touches the winner's bytes) and the row keeps that key.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Sequence

import zstandard

from orchestrator.logstore.archive import ArchivedLog, ArchiveError, Chunk, ExpiredLog, LogArchive, ObjectStore
from orchestrator.store.backend import Backend
from orchestrator.store.errors import StoreError
from orchestrator.store.records import Row

# zstd level 3: a log of numbers shrinks 20x, and reading it back (what every node
# that did not run the job does) is three times faster than with zlib.
LEVEL = 3
_JOB_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_COLUMNS = "job_id, attempt, host, lines, stored_bytes, complete"
# The attempt's row, so that the conditional update after it has something to decide on.
_ENSURE_ROW = ("INSERT INTO log_archives (job_id, attempt, host, lines, stored_bytes, raw_bytes, complete,"
               " created_at, updated_at) VALUES ($1, $2, $3, 0, 0, 0, FALSE, {now}, {now})"
               " ON CONFLICT (job_id, attempt) DO NOTHING")


def object_key(job_id: str, attempt: int, first: int, last: int) -> str:
    """A new key for a chunk's bytes in object storage (names checked: they become a path;
    a random part makes each write's key its own)."""
    if not _JOB_ID.match(job_id) or attempt < 1:
        raise ArchiveError(f"job {job_id!r} attempt {attempt} cannot name an archived log")
    return f"{job_id}/{attempt}/{first:012d}-{last:012d}-{secrets.token_hex(4)}.zst"


def _compress(page: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=LEVEL).compress(page)  # one per call: they are not thread-safe


def _decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)  # the frame says its size


def _archived(row: Row) -> ArchivedLog:
    return ArchivedLog(row["job_id"], int(row["attempt"]), row["host"], int(row["lines"]),
                       int(row["stored_bytes"]), bool(row["complete"]))


class SqlLogArchive(LogArchive):
    """The archive in ``backend`` (the state store's), chunk bytes in ``objects`` when given."""

    def __init__(self, backend: Backend, objects: ObjectStore | None = None) -> None:
        self.backend = backend
        self.objects = objects
        self.name = "s3" if objects is not None else backend.dialect

    def __repr__(self) -> str:
        return f"SqlLogArchive({self.backend.where}{', objects' if self.objects else ''})"

    async def _run(self, sql: str, *args: object) -> Sequence[Row]:
        try:
            return await self.backend.run(sql, *args)
        except StoreError as err:
            raise ArchiveError(f"the log archive failed: {err}") from err

    async def state(self, job_id: str, attempt: int) -> ArchivedLog | None:
        rows = await self._run(f"SELECT {_COLUMNS} FROM log_archives WHERE job_id = $1 AND attempt = $2",
                               job_id, attempt)
        return _archived(rows[0]) if rows else None

    async def append(self, job_id: str, attempt: int, host: str, chunk: Chunk) -> bool:
        data = await asyncio.to_thread(_compress, chunk.page)
        key = None
        if self.objects is not None:
            key = object_key(job_id, attempt, chunk.first_sequence, chunk.last_sequence)
            await self.objects.put(key, data)
        try:
            async with self.backend.transaction() as tx:
                await tx.execute(_ENSURE_ROW, job_id, attempt, host)
                moved = await tx.fetch(
                    "UPDATE log_archives SET lines = $4, stored_bytes = stored_bytes + $5,"
                    " raw_bytes = raw_bytes + $6, host = $3, updated_at = {now}"
                    " WHERE job_id = $1 AND attempt = $2 AND lines = $7 AND NOT complete RETURNING lines",
                    job_id, attempt, host, chunk.last_sequence, len(data), len(chunk.page), chunk.first_sequence - 1)
                if moved:
                    await tx.execute(
                        "INSERT INTO log_chunks (job_id, attempt, first_sequence, last_sequence, raw_bytes, data,"
                        " object_key) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        job_id, attempt, chunk.first_sequence, chunk.last_sequence, len(chunk.page),
                        None if key else data, key)
        except StoreError as err:
            raise ArchiveError(f"cannot archive log lines of job {job_id} attempt {attempt}: {err}") from err
        if not moved and key is not None:
            await self.objects.delete([key])  # type: ignore[union-attr]  # the loser's copy
        return bool(moved)

    async def complete(self, job_id: str, attempt: int, host: str, lines: int) -> bool:
        try:
            async with self.backend.transaction() as tx:
                await tx.execute(_ENSURE_ROW, job_id, attempt, host)
                done = await tx.fetch(
                    "UPDATE log_archives SET complete = TRUE, updated_at = {now}"
                    " WHERE job_id = $1 AND attempt = $2 AND lines = $3 AND NOT complete RETURNING lines",
                    job_id, attempt, lines)
        except StoreError as err:
            raise ArchiveError(f"cannot complete the archived log of job {job_id} attempt {attempt}: {err}") from err
        return bool(done)

    async def chunks(self, job_id: str, attempt: int, from_sequence: int, limit: int = 8) -> list[Chunk]:
        rows = await self._run(
            "SELECT first_sequence, last_sequence, data, object_key FROM log_chunks WHERE job_id = $1 AND attempt = $2"
            " AND last_sequence >= $3 ORDER BY first_sequence LIMIT $4", job_id, attempt, from_sequence, limit)
        out = []
        for row in rows:
            first, last, data = int(row["first_sequence"]), int(row["last_sequence"]), row["data"]
            if data is None:
                if self.objects is None or not row["object_key"]:
                    raise ArchiveError(f"chunk {first}-{last} of job {job_id} attempt {attempt} is in object "
                                       "storage, but none is configured (logs.archive)")
                data = await self.objects.get(row["object_key"])
            try:
                page = await asyncio.to_thread(_decompress, bytes(data))
            except zstandard.ZstdError as err:
                raise ArchiveError(f"chunk {first}-{last} of job {job_id} attempt {attempt} is damaged: {err}") \
                    from err
            out.append(Chunk(first, last, page))
        return out

    async def incomplete(self, host: str) -> list[ArchivedLog]:
        rows = await self._run(f"SELECT {_COLUMNS} FROM log_archives WHERE host = $1 AND NOT complete", host)
        return [_archived(row) for row in rows]

    async def expired(self, job_ids: Sequence[str]) -> list[ExpiredLog]:
        out: list[ExpiredLog] = []
        for job_id in job_ids:
            rows = await self._run("SELECT job_id, attempt, stored_bytes FROM log_archives WHERE job_id = $1",
                                   job_id)
            out.extend(ExpiredLog(r["job_id"], int(r["attempt"]), int(r["stored_bytes"])) for r in rows)
        return out

    async def delete(self, job_ids: Sequence[str]) -> int:
        deleted = 0
        for job_id in job_ids:
            if self.objects is not None:
                rows = await self._run("SELECT object_key FROM log_chunks WHERE job_id = $1"
                                       " AND object_key IS NOT NULL", job_id)
                keys = [r["object_key"] for r in rows]
                if keys:
                    await self.objects.delete(keys)
            try:
                async with self.backend.transaction() as tx:
                    await tx.execute("DELETE FROM log_chunks WHERE job_id = $1", job_id)
                    gone = await tx.fetch("DELETE FROM log_archives WHERE job_id = $1 RETURNING attempt", job_id)
            except StoreError as err:
                raise ArchiveError(f"cannot delete the archived logs of job {job_id}: {err}") from err
            deleted += len(gone)
        return deleted

    async def close(self) -> None:
        if self.objects is not None:
            await self.objects.close()
