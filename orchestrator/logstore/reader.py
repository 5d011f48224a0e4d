"""``LogReader``: any attempt's log, read on any node, as pages of lines.

    reader = LogReader(store, logstore, host, archive, peers)
    async for page in reader.pages(job_id, attempt=0, from_sequence=1, follow=True):
        ...   # LogPage: runs of lines; keepalive pages while nothing happens; the last has end=True

This is the one way logs are read: AdminService.TailLogs streams its pages,
the single node's raw HTTP log renders them, and a dashboard following a job
live can do the same (each page carries the sequences it holds, so a reader
that lost its connection asks again from ``last sequence + 1``).

Where the lines come from, in this order:

1. this node's own files (``LogStore``): the attempt runs or ran here;
2. the archive, once it holds the whole log (``LogArchive.state().complete``);
3. the node that holds the attempt (``PeerClient``, asked at the address the
   store lists for it): the attempt runs there, or ended there moments ago
   and is not archived yet;
4. the archive as far as it goes, when that node cannot be reached: while the
   attempt runs, a follower polls the archive (a running log is shipped to it
   every ``logs.archive_interval``); once the attempt has ended without its
   log being complete - its host was lost - the last page says so
   (``LogPage.ended``) after the last line that reached the archive.

A follower of a log that is not growing gets a keepalive page every
``keepalive`` seconds and the reader looks at the attempt meanwhile: an
attempt that ended while its log stayed open (its node died) ends the read
with the same note instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol

from common.rpc import admin_pb2
from orchestrator.logstore.archive import ArchivedLog, ArchiveError, LogArchive
from orchestrator.logstore.errors import LogNotFound, LogStoreError
from orchestrator.logstore.pages import KEEPALIVE_SECONDS, frame_pages, last_sequence, trim, with_keepalive
from orchestrator.logstore.store import LogStore
from orchestrator.store import AttemptRecord, JobNotFound, JobState, Store

log = logging.getLogger(__name__)
ARCHIVE_POLL = 1.0  # a follower reading a running log from the archive looks for more this often
COMPLETION_WAIT = 60.0  # an ended attempt whose live host has not archived all of its log yet: wait this long


class LogRequestError(LogStoreError):
    """The request names no log that can exist (an attempt out of range)."""


class PeerUnavailable(LogStoreError):
    """The node holding a log cannot be asked (no address, unreachable, or the stream broke)."""


class Peers(Protocol):
    """What the reader asks of other nodes (``peers.PeerClient``)."""

    def pages(self, host: str, job_id: str, attempt: int, from_sequence: int,
              follow: bool) -> AsyncGenerator[admin_pb2.LogPage, None]: ...


def end_page(ended: str = "") -> admin_pb2.LogPage:
    return admin_pb2.LogPage(end=True, ended=ended)


def ended_note(attempt: AttemptRecord, lines: int) -> str:
    """What the last page of a log its host never finished says."""
    where = f"host {attempt.host}" if attempt.host else "its host"
    how = attempt.state.name.lower() + (f": {attempt.reason}" if attempt.reason else "")
    return (f"the log of attempt {attempt.attempt} ends here, after line {lines}: {where} stopped before "
            f"the log was complete (the attempt ended {how})")


class LocalLogs:
    """The logs this node holds in its files."""

    def __init__(self, logstore: LogStore, keepalive: float = KEEPALIVE_SECONDS) -> None:
        self.logstore = logstore
        self.keepalive = keepalive

    async def pages(self, job_id: str, attempt: int, from_sequence: int,
                    follow: bool) -> AsyncGenerator[admin_pb2.LogPage, None]:
        """The attempt's pages from ``from_sequence``; ``end`` when the log has its end marker
        (a read without follow stops without it at the durable end of an open log); with
        ``follow``, keepalive pages while it does not grow. ``LogNotFound`` when no log is here."""
        joblog = await self.logstore.open(job_id, attempt, create=False)
        pages = frame_pages(joblog.read_frames(from_sequence, follow=follow), from_sequence)
        async for page in with_keepalive(pages, self.keepalive) if follow else pages:
            yield page
        if joblog.closed:
            yield end_page()


class LogReader:
    """Reads any job attempt's log on this node (see the module docstring)."""

    def __init__(self, store: Store, logstore: LogStore, host: str, archive: LogArchive | None = None,
                 peers: Peers | None = None, keepalive: float = KEEPALIVE_SECONDS,
                 archive_poll: float = ARCHIVE_POLL) -> None:
        self.store = store
        self.local = LocalLogs(logstore, keepalive)
        self.logstore = logstore
        self.host = host
        self.archive = archive
        self.peers = peers
        self.keepalive = keepalive
        self.archive_poll = archive_poll

    async def attempt_of(self, job_id: str, attempt: int = 0) -> AttemptRecord:
        """The attempt asked for (0: the job's current one). ``JobNotFound``, ``LogRequestError``."""
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        wanted = attempt or job.attempt
        if not 1 <= wanted <= job.attempt:
            raise LogRequestError(f"job {job_id} has attempt{'s 1..' if job.attempt > 1 else ' '}"
                                  f"{job.attempt}, not {wanted}")
        for record in await self.store.attempts(job_id):
            if record.attempt == wanted:
                return record
        raise LogRequestError(f"job {job_id} has no attempt {wanted}")

    async def lines_stored(self, job_id: str, attempt: int = 0) -> int:
        """How many lines of the attempt's log can be read now (for ``?tail=N``)."""
        record = await self.attempt_of(job_id, attempt)
        if await self.logstore.exists(record.job_id, record.attempt):
            return (await self.logstore.open(record.job_id, record.attempt, create=False)).highest_sequence
        archived = await self._archived(record.job_id, record.attempt)
        if archived is not None and (archived.complete or not record.host or self.peers is None):
            return archived.lines
        last = 0
        async for page in self._pages(record, 1, follow=False):  # on another node: count them
            if page.runs:
                last = last_sequence(page)
        return last

    async def pages(self, job_id: str, attempt: int = 0, from_sequence: int = 1,
                    follow: bool = False) -> AsyncGenerator[admin_pb2.LogPage, None]:
        """Pages of the attempt's log from ``from_sequence``; the first says which attempt.

        Without ``follow`` it stops at what is stored now: with an ``end`` page
        when the log is complete (or ended early: ``ended`` says where), without
        one while the attempt still runs. ``LogNotFound`` for an attempt that
        has not started logging yet (read without follow). With ``follow`` it
        goes on until the end page."""
        record = await self.attempt_of(job_id, attempt)
        first = True
        async for page in self._pages(record, max(1, from_sequence), follow):
            if first:
                page.attempt = record.attempt
                first = False
            yield page

    async def _attempt(self, record: AttemptRecord) -> AttemptRecord:
        for now in await self.store.attempts(record.job_id):
            if now.attempt == record.attempt:
                return now
        return record

    async def _pages(self, record: AttemptRecord, start: int, follow: bool) -> AsyncIterator[admin_pb2.LogPage]:
        job_id, attempt = record.job_id, record.attempt
        next_seq = start
        peer_failed = False
        while True:
            record = await self._attempt(record)
            terminal = record.state.terminal
            # 1. this node's files
            if await self.logstore.exists(job_id, attempt):
                live = follow and not terminal and record.host == self.host
                async for page in self.local.pages(job_id, attempt, next_seq, live):
                    if page.keepalive and (await self._attempt(record)).state.terminal:
                        break  # it ended but its log never did: the node lost the attempt
                    next_seq = self._advance(page, next_seq)
                    yield page
                    if page.end:
                        return
                if record.host == self.host or terminal or not follow:
                    record = await self._attempt(record)
                    if record.state.terminal:
                        yield end_page(ended_note(record, next_seq - 1))
                    return
            # 2. the archive, when it holds the whole log
            archived = await self._archived(job_id, attempt)
            if archived is not None and archived.complete:
                async for page in self._from_archive(job_id, attempt, next_seq):
                    next_seq = self._advance(page, next_seq)
                    yield page
                yield end_page()
                return
            # 3. the node that holds it
            if self.peers is not None and record.host and record.host != self.host and not peer_failed:
                try:
                    async for page in self.peers.pages(record.host, job_id, attempt, next_seq, follow):
                        if page.keepalive and not follow:
                            continue
                        next_seq = self._advance(page, next_seq)
                        yield page
                        if page.end:
                            return
                    if not follow:
                        if (await self._attempt(record)).state.terminal:
                            yield end_page(ended_note(await self._attempt(record), next_seq - 1))
                        return
                except LogNotFound:
                    if not follow and not terminal:
                        raise
                except PeerUnavailable as err:
                    log.info("reading the log from the archive: %s", err,
                             extra={"fields": {"job": job_id, "attempt": attempt, "host": record.host}})
                    peer_failed = True
                    continue
            # 4. the archive as far as it goes
            async for page in self._from_archive(job_id, attempt, next_seq):
                next_seq = self._advance(page, next_seq)
                yield page
            if terminal:
                archived = await self._completed_soon(record)
                if archived is not None and archived.complete:
                    continue  # completed meanwhile: read the rest, then end
                if record.host in ("", self.host) or (archived is None and self.peers is None):
                    # Ran nowhere, or here without a line (no log is stored then), or this node
                    # cannot know better (no archive, no peers: the single node).
                    yield end_page()
                else:
                    yield end_page(ended_note(record, next_seq - 1))
                return
            if not follow:
                if next_seq == start and record.state in (JobState.QUEUED, JobState.PROVISIONING):
                    raise LogNotFound(f"no log yet for job {job_id} attempt {attempt}")
                return
            yield admin_pb2.LogPage(keepalive=True)
            await asyncio.sleep(self.archive_poll)
            peer_failed = False  # ask the node again: it may be back

    async def _completed_soon(self, record: AttemptRecord) -> ArchivedLog | None:
        """The archive's state of an attempt that ended, once complete - waiting while its host
        is alive and so about to ship the rest (it ships after the job's result is stored)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COMPLETION_WAIT
        while True:
            archived = await self._archived(record.job_id, record.attempt)
            if archived is not None and archived.complete or self.archive is None or not record.host:
                return archived
            hosts = {h.name: h for h in await self.store.list_hosts()}
            host = hosts.get(record.host)
            if host is None or not host.alive or loop.time() >= deadline:
                return archived
            await asyncio.sleep(self.archive_poll / 4)

    @staticmethod
    def _advance(page: admin_pb2.LogPage, next_seq: int) -> int:
        if page.runs:
            return max(next_seq, last_sequence(page) + 1)
        return next_seq

    async def _archived(self, job_id: str, attempt: int) -> ArchivedLog | None:
        if self.archive is None:
            return None
        try:
            return await self.archive.state(job_id, attempt)
        except ArchiveError as err:
            raise LogStoreError(str(err)) from err

    async def _from_archive(self, job_id: str, attempt: int, start: int) -> AsyncIterator[admin_pb2.LogPage]:
        """The archived pages from ``start`` (up to what is archived now)."""
        if self.archive is None:
            return
        next_seq = start
        while True:
            try:
                chunks = await self.archive.chunks(job_id, attempt, next_seq)
            except ArchiveError as err:
                raise LogStoreError(str(err)) from err
            if not chunks:
                return
            for chunk in chunks:
                page = trim(admin_pb2.LogPage.FromString(chunk.page), next_seq)
                next_seq = chunk.last_sequence + 1
                yield page
