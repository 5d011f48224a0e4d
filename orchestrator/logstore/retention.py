"""Retention: job records and logs older than ``logs.retention`` (default 90 days) are deleted.

A job goes once its current attempt finished longer ago than the retention
age (by the store's clock, the one every node shares): its archived logs, its
record with its attempts and steps, and its log files on this node. Every
node runs the pass every ``logs.gc_interval``; whichever comes first deletes
a job, the others find nothing left to do in the store. A node's own log
directories whose job is gone (deleted by another node's pass) and whose files
are older than the age go in the same pass. ``ciadm gc --dry-run`` shows what
a pass would delete (AdminService.CollectGarbage).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common.errors import SolsticeError
from orchestrator.artifacts.archive import ArtifactArchive
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.logstore.archive import LogArchive
from orchestrator.logstore.store import LogStore
from orchestrator.store import Store, StoreError

log = logging.getLogger(__name__)
BATCH = 500
SHOWN = 100


@dataclass(frozen=True)
class GarbageReport:
    """What a pass deleted (or, dry, would delete)."""

    dry_run: bool
    cutoff: datetime  # what finished before this goes
    jobs: int
    logs: int  # attempt logs: archived ones and this node's files
    log_bytes: int
    job_ids: tuple[str, ...]  # the first SHOWN of the jobs


def _tree_size(path: Path) -> tuple[int, float]:
    """Bytes under ``path`` and the newest modification time there."""
    size, newest = 0, 0.0
    for item in [path, *path.rglob("*")]:
        try:
            info = item.stat()
        except OSError:
            continue
        newest = max(newest, info.st_mtime)
        if item.is_file():
            size += info.st_size
    return size, newest


class Retention:
    """Deletes what is older than ``age`` seconds (see the module docstring)."""

    def __init__(self, store: Store, logstore: LogStore, archive: LogArchive | None, age: float) -> None:
        self.store = store
        self.logstore = logstore
        self.archive = archive
        self.age = age
        backend = getattr(archive, "backend", None)
        self._artifact_archive = ArtifactArchive(backend) if backend is not None else None

    async def collect(self, dry_run: bool = False, older_than: float | None = None) -> GarbageReport:
        age = older_than or self.age
        cutoff = datetime.fromtimestamp(time.time() - age, tz=UTC)
        jobs = logs = size = 0
        shown: list[str] = []
        after = 0  # a dry run pages through the expired jobs; a real one deletes each batch
        while True:
            expired = await self.store.expired_jobs(age, BATCH + after if dry_run else BATCH)
            batch = expired[after:] if dry_run else expired
            if not batch:
                break
            found = await self._logs_of(batch)
            if not dry_run:
                if self.archive is not None:
                    await self.archive.delete(batch)
                    if self._artifact_archive is not None:  # a cluster's artifacts go with its logs
                        await self._artifact_archive.delete(batch)
                gone = await self.store.delete_jobs(batch, age)
                await asyncio.to_thread(self._remove_dirs, gone)
                batch = gone
            logs += found[0]
            size += found[1]
            jobs += len(batch)
            shown.extend(batch[: SHOWN - len(shown)])
            if dry_run:
                after += len(batch)
            elif len(expired) < BATCH or not batch:
                break
        orphans = await self._orphan_dirs(time.time() - age)
        for path, bytes_ in orphans:
            logs += sum(1 for _ in path.glob("*.log"))
            size += bytes_
        if not dry_run:
            await asyncio.to_thread(shutil_remove, [path for path, _ in orphans])
            # Artifacts live in their job's log folder (gone above with it); an ``expire``
            # shorter than the retention age removes them earlier.
            await ArtifactStore(self.logstore.root, self._artifact_archive).expire()
        report = GarbageReport(dry_run, cutoff, jobs, logs, size, tuple(shown))
        if jobs or orphans:
            log.info("retention %s %d jobs and %d logs (%d bytes) that finished before %s",
                     "would delete" if dry_run else "deleted", jobs, logs, size, cutoff.isoformat(timespec="seconds"))
        return report

    async def _logs_of(self, job_ids: list[str]) -> tuple[int, int]:
        """How many attempt logs these jobs have (archived, or here only) and their bytes."""
        archived = await self.archive.expired(job_ids) if self.archive is not None else []
        seen = {(e.job_id, e.attempt) for e in archived}
        count, size = len(archived), sum(e.stored_bytes for e in archived)
        for job_id in job_ids:
            folder = self.logstore.root / job_id
            for path in await asyncio.to_thread(lambda: list(folder.glob("*.log"))):  # noqa: B023
                if path.stem.isdigit() and (job_id, int(path.stem)) not in seen:
                    count += 1
                size += path.stat().st_size
        return count, size

    def _remove_dirs(self, job_ids: list[str]) -> None:
        shutil_remove([self.logstore.root / job_id for job_id in job_ids])

    async def _orphan_dirs(self, cutoff: float) -> list[tuple[Path, int]]:
        """This node's log folders untouched since ``cutoff`` whose job the store no longer has."""
        root = self.logstore.root
        if not root.is_dir():
            return []
        out = []
        for folder in await asyncio.to_thread(lambda: [p for p in root.iterdir() if p.is_dir()]):
            size, newest = await asyncio.to_thread(_tree_size, folder)
            if newest >= cutoff:
                continue
            try:
                if await self.store.get_job(folder.name) is not None:
                    continue  # its record goes first (above), by the store's rule
            except StoreError:
                continue
            out.append((folder, size))
        return out

    async def run(self, interval: float) -> None:
        """A pass every ``interval`` s until cancelled (an owned task of the node)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.collect()
            except SolsticeError as err:  # the store or the archive: the next pass tries again
                log.error("retention pass failed: %s", err)


def shutil_remove(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
