"""The directory of job logs: ``<root>/<job id>/<attempt>.log`` (+ ``.idx``).

An attempt whose runner never sent a line has no log here at all (``exists``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common.files import private_dir
from common.logbatch import job_masker
from orchestrator.logstore.errors import LogNotFound, LogStoreError
from orchestrator.logstore.joblog import JobLog

# Writer threads shared by the logs of one store (a host runs a few dozen jobs at once).
WRITER_THREADS = 4
# Threads that read and render logs for readers (pages, TailLogs, followers).
READER_THREADS = 2
# Job ids become directory names: no separators, no leading dot.
_JOB_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


class LogStore:
    """Durable per-attempt logs under one directory, shared by writers and followers.

    One process owns a directory. ``open`` returns the same ``JobLog`` for
    the same attempt while it is open; a closed log is forgotten (it holds
    no thread and no descriptor, and ``open`` reads it from disk again).
    After a restart ``open`` recovers what was durable (a torn final frame
    is cut off).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._logs: dict[tuple[str, int], JobLog] = {}
        # Shared by every log: each log still makes one change at a time.
        self._writers = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="joblog")
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="logread")
        self._lock = asyncio.Lock()
        self._closed = False

    def path(self, job_id: str, attempt: int) -> Path:
        if not _JOB_ID.match(job_id):
            raise LogStoreError(f"job id {job_id!r} cannot name a log file")
        if attempt < 0:
            raise LogStoreError(f"attempt {attempt} is negative")
        return self.root / job_id / f"{attempt}.log"

    async def open(
        self, job_id: str, attempt: int, secrets: Iterable[str] = (), create: bool = True
    ) -> JobLog:
        """The log of ``job_id``/``attempt``; ``secrets`` are masked in every line stored
        through this handle. With ``create=False`` a missing log raises LogNotFound."""
        if self._closed:
            raise LogStoreError("the log store is shut down")
        key = (job_id, attempt)
        async with self._lock:
            log = self._logs.get(key)
            if log is not None:
                if secrets:
                    log.add_secrets(secrets)
                return log
            path = self.path(job_id, attempt)
            if not create and not path.exists():
                raise LogNotFound(f"no log for job {job_id} attempt {attempt}")
            log = JobLog(path, path.with_suffix(".idx"), job_masker(secrets), on_closed=self._forget,
                         writers=self._writers, readers=self._readers)

            def _open() -> None:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                log._open_sync()

            try:
                await asyncio.to_thread(_open)
            except OSError as err:
                log.release()
                raise LogStoreError(f"cannot open the log {path}: {err.strerror}") from err
            if log.closed:
                log.drop_resources()  # finished before: read-only from now on, nothing to share
            else:
                self._logs[key] = log
            return log

    async def exists(self, job_id: str, attempt: int) -> bool:
        """True when the attempt has a log (open here or on disk).

        An attempt that logged nothing stores no log at all: readers (AdminService
        ``TailLogs``, the single node's log page) show a finished attempt without
        one as an empty log that has ended. Creating a file and its job's
        directory for it was most of what such a job cost the node."""
        if self._closed:
            raise LogStoreError("the log store is shut down")
        if (job_id, attempt) in self._logs:
            return True
        path = self.path(job_id, attempt)
        try:
            return path.exists()  # on the loop: one stat costs less than the thread hop
        except OSError as err:
            raise LogStoreError(f"cannot look for the log {path}: {err.strerror}") from err

    def open_logs(self) -> list[tuple[str, int]]:
        """The (job id, attempt) of every log open for writing now."""
        return list(self._logs)

    def _forget(self, log: JobLog) -> None:
        for key, known in list(self._logs.items()):
            if known is log:
                del self._logs[key]

    async def aclose(self) -> None:
        """Release every file (logs are not closed: their jobs may go on elsewhere)."""
        async with self._lock:
            self._closed = True
            # Let a write in flight finish before its descriptors close; a change
            # asked for from now on is refused with LogClosed.
            self._writers.shutdown(wait=True)
            self._readers.shutdown(wait=False, cancel_futures=True)  # a read in flight fails its reader
            for log in self._logs.values():
                log.release()
            self._logs.clear()

    async def __aenter__(self) -> LogStore:
        private_dir(self.root)  # job output and masked secrets: no other user reads them
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
