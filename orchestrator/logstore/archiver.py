"""``Archiver``: ships this node's attempt logs to the shared ``LogArchive``.

    archiver = Archiver(logstore, archive, host, interval=5.0)
    await archiver.recover()        # at start: what an earlier process left half-shipped
    task = create_task(archiver.run())
    archiver.finished(job_id, attempt)   # the attempt's lifecycle: it ended, ship the rest
    await archiver.drain(grace)     # at stop: ship what is queued, then cancel the task

While an attempt runs its new lines are shipped every ``interval`` seconds
(so the log of a host that dies mid-job is in the archive up to a few
seconds before the end); when it ends the rest goes, and the archive marks
the log complete. Lines go as whole stored frames joined into chunks of up to
``CHUNK_BYTES``, each continuing exactly where the archive stands
(``LogArchive.append`` refuses anything else), so a restart or a second
shipper never leaves a gap or a line twice. Shipping never holds up a job:
the finished hook only queues the attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from orchestrator.logstore.archive import ArchiveError, Chunk, LogArchive
from orchestrator.logstore.errors import LogNotFound, LogStoreError
from orchestrator.logstore.frames import Frame
from orchestrator.logstore.joblog import JobLog
from orchestrator.logstore.pages import join_payloads, page_of
from orchestrator.logstore.store import LogStore

log = logging.getLogger(__name__)
CHUNK_BYTES = 1024 * 1024


class Archiver:
    """See the module docstring. One per node; ``run`` is a task the node owns."""

    def __init__(self, logstore: LogStore, archive: LogArchive, host: str, interval: float = 5.0) -> None:
        self.logstore = logstore
        self.archive = archive
        self.host = host
        self.interval = interval
        self._finished: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._archived: dict[tuple[str, int], int] = {}  # lines archived, as this node last saw it
        self._busy = False
        self.shipped_chunks = 0

    def finished(self, job_id: str, attempt: int) -> None:
        """The attempt ended (its log is closed, or it never had one): ship the rest, complete it."""
        self._finished.put_nowait((job_id, attempt))

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being shipped."""
        return self._finished.empty() and not self._busy

    async def run(self) -> None:
        """Until cancelled: finished attempts at once, running ones every ``interval``."""
        loop = asyncio.get_running_loop()
        next_pass = loop.time() + self.interval
        while True:
            try:
                item = await asyncio.wait_for(self._finished.get(), max(0.0, next_pass - loop.time()))
            except TimeoutError:
                item = None
            self._busy = True
            try:
                if item is not None:
                    await self._guarded(*item, final=True)
                if loop.time() >= next_pass:
                    for job_id, attempt in self.logstore.open_logs():
                        await self._guarded(job_id, attempt, final=False)
                    next_pass = loop.time() + self.interval
            finally:
                self._busy = False

    async def _guarded(self, job_id: str, attempt: int, final: bool) -> None:
        try:
            await self.ship(job_id, attempt, final)
        except (ArchiveError, LogStoreError) as err:
            # The next pass (or the next start's recovery) tries again from where the archive stands.
            log.error("cannot archive a log: %s", err, extra={"fields": {"job": job_id, "attempt": attempt}})
            if final:
                self._retry_later(job_id, attempt)

    def _retry_later(self, job_id: str, attempt: int) -> None:
        asyncio.get_running_loop().call_later(self.interval, self._finished.put_nowait, (job_id, attempt))

    async def drain(self, grace: float) -> bool:
        """Wait up to ``grace`` s for the queued attempts to be shipped; True when they were."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while not self.idle and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return self.idle

    async def recover(self) -> int:
        """Ship what an earlier process of this host left unarchived; how many logs it completed."""
        completed = 0
        for held in await self.archive.incomplete(self.host):
            if await self.ship(held.job_id, held.attempt, True):
                completed += 1
        return completed

    async def ship(self, job_id: str, attempt: int, final: bool) -> bool:
        """Ship the attempt's lines the archive lacks; with ``final``, mark the log complete once
        it is closed (or there is none: the attempt logged nothing). True when it is complete."""
        key = (job_id, attempt)
        try:
            joblog = await self.logstore.open(job_id, attempt, create=False)
        except LogNotFound:
            joblog = None
        known = self._archived.get(key)
        if joblog is not None and not final and known == joblog.highest_sequence:
            return False  # nothing new since the last pass: no query
        state = await self.archive.state(job_id, attempt)
        if state is not None and state.complete:
            self._archived.pop(key, None)
            return True
        archived = state.lines if state is not None else 0
        if joblog is not None:
            archived = await self._ship_frames(joblog, job_id, attempt, archived)
        if not final:
            return False
        if joblog is not None and not joblog.closed:
            return False  # an open log whose attempt ended elsewhere: what is here went; it never completes
        self._archived.pop(key, None)
        return await self.archive.complete(job_id, attempt, self.host, archived)

    async def _ship_frames(self, joblog: JobLog, job_id: str, attempt: int, archived: int) -> int:
        key = (job_id, attempt)
        pending: list[Frame] = []
        size = 0
        async for found in joblog.read_frames(archived + 1, follow=False):
            for frame in found:
                if pending and size + len(frame.payload) > CHUNK_BYTES:
                    archived = await self._append(job_id, attempt, archived, pending)
                    pending, size = [], 0
                pending.append(frame)
                size += len(frame.payload)
        if pending:
            archived = await self._append(job_id, attempt, archived, pending)
        self._archived[key] = archived
        return archived

    async def _append(self, job_id: str, attempt: int, archived: int, frames: Sequence[Frame]) -> int:
        first = archived + 1
        payloads = [f.payload for f in frames]
        if frames[0].first_sequence == first:
            page = join_payloads(first, payloads)
        else:  # the archive stops inside a frame (another writer's chunking): from there on
            page = page_of(frames[0].first_sequence, payloads, first).SerializeToString()
        last = frames[-1].last_sequence
        if not await self.archive.append(job_id, attempt, self.host, Chunk(first, last, page)):
            state = await self.archive.state(job_id, attempt)
            raise ArchiveError(f"the archive of job {job_id} attempt {attempt} moved meanwhile "
                               f"(now at line {state.lines if state else 0}); trying again from there")
        self.shipped_chunks += 1
        return last
