"""Where the job page reads logs from: one small interface, today's log store behind it.

``LogSource`` is all the pages use: ``read`` for the lines a page shows and
``follow`` for the live view (batches of lines from a sequence on, live,
ending when the log is closed). ``LocalLogs`` serves it from this process's
``LogStore`` (the single node, where every log is local). A reader that finds
an attempt's log on any node (or in an archive) replaces it by implementing
the same two methods; until then a multi-host dashboard uses ``NoLogs``,
which says where the log is kept.

    LogError
    ├── LogMissing       the attempt has no log (yet): queued, booting, or it never logged
    └── LogElsewhere     the log is kept where this process cannot read it
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.errors import SolsticeError
from common.logbatch import LogLine
from orchestrator.logstore import LogNotFound, LogStore, LogStoreError
from orchestrator.logstore.joblog import JobLog

BATCH_LINES = 2000  # at most this many lines per batch of ``follow``
QUEUE_LINES = 20000  # lines read ahead of a slow follower before reading pauses


class LogError(SolsticeError):
    """A log cannot be read; the message says why, for the page."""


class LogMissing(LogError):
    """There is no log for the attempt (yet)."""


class LogElsewhere(LogError):
    """The log is kept where this process cannot read it."""


@dataclass(frozen=True)
class LogPage:
    """Lines ``first``..``last`` of an attempt's log, and how far the log went when read."""

    lines: Sequence[LogLine]
    highest: int  # the highest sequence stored when read
    closed: bool  # the log has ended (no line will follow)


class LogSource(Protocol):
    async def read(self, job_id: str, attempt: int, start: int, limit: int) -> LogPage:
        """Up to ``limit`` stored lines from sequence ``start`` (1 = the first; 0 = the last ``limit``); no waiting.
        ``LogMissing`` / ``LogElsewhere`` / ``LogError``."""
        ...

    def follow(self, job_id: str, attempt: int, start: int) -> AsyncGenerator[Sequence[LogLine], None]:
        """Batches of lines from ``start``: stored ones, then live ones as they come; ends when the
        log is closed. Raises as ``read`` does. Close it (``aclose``) when done early."""
        ...


class LocalLogs:
    """``LogSource`` over this process's ``LogStore``."""

    def __init__(self, logstore: LogStore) -> None:
        self.logstore = logstore

    async def _open(self, job_id: str, attempt: int) -> JobLog:
        try:
            return await self.logstore.open(job_id, attempt, create=False)
        except LogNotFound:
            raise LogMissing(f"no log for job {job_id} attempt {attempt}") from None
        except LogStoreError as err:
            raise LogError(f"the log store failed: {err}") from None

    async def read(self, job_id: str, attempt: int, start: int, limit: int) -> LogPage:
        joblog = await self._open(job_id, attempt)
        highest, closed = joblog.highest_sequence, joblog.closed
        if start <= 0:
            start = max(1, highest - limit + 1)
        lines: list[LogLine] = []
        if start <= highest and limit > 0:
            try:
                async with contextlib.aclosing(joblog.follow(start)) as stream:
                    async for line in stream:  # stops at what was stored when called: never waits
                        if line.sequence > highest:
                            break
                        lines.append(line)
                        if line.sequence == highest or len(lines) >= limit:
                            break
            except LogStoreError as err:
                raise LogError(f"the log store failed: {err}") from None
        return LogPage(lines, highest, closed)

    async def follow(self, job_id: str, attempt: int, start: int) -> AsyncGenerator[Sequence[LogLine], None]:
        joblog = await self._open(job_id, attempt)
        ahead: asyncio.Queue[LogLine | None] = asyncio.Queue(QUEUE_LINES)
        failure: list[BaseException] = []

        async def read_ahead() -> None:
            try:
                async for line in joblog.follow(start):
                    await ahead.put(line)
            except LogStoreError as err:
                failure.append(LogError(f"the log store failed: {err}"))
            await ahead.put(None)  # not when cancelled: nobody reads any more

        # Lines are read ahead by a task of this generator's own, so each batch holds
        # whatever arrived meanwhile: one batch per wake-up, not one per line.
        reader = asyncio.create_task(read_ahead(), name=f"follow log {job_id}#{attempt}")
        try:
            ended = False
            while not ended:
                batch: list[LogLine] = []
                first = await ahead.get()
                ended = first is None
                if first is not None:
                    batch.append(first)
                while not ended and len(batch) < BATCH_LINES and not ahead.empty():
                    item = ahead.get_nowait()
                    if item is None:
                        ended = True
                    else:
                        batch.append(item)
                if batch:
                    yield batch
            if failure:
                raise failure[0]
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


class NoLogs:
    """``LogSource`` for a process that keeps no logs (a multi-host dashboard): says where they are."""

    async def read(self, job_id: str, attempt: int, start: int, limit: int) -> LogPage:
        raise LogElsewhere("job logs are kept by the node that ran the attempt; "
                           f"read this one with: ciadm logs {job_id}")

    async def follow(self, job_id: str, attempt: int, start: int) -> AsyncGenerator[Sequence[LogLine], None]:
        raise LogElsewhere("job logs are kept by the node that ran the attempt; "
                           f"read this one with: ciadm logs {job_id}")
        yield []  # pragma: no cover - makes this an async generator
