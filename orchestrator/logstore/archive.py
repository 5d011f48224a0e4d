"""``LogArchive``: every attempt's log where every node can read it.

A node keeps the logs of the attempts it runs in its own files (``LogStore``)
and ships them, as they grow and once more when the attempt ends
(``archiver.Archiver``), to the archive the nodes share. The archive holds a
log as chunks - consecutive lines as one compressed ``LogPage`` - keyed by
their first sequence, so a reader can start anywhere, and per attempt how
far it goes and whether it is complete.

Implementations: ``SqlLogArchive`` (sqlarchive.py: chunks in the state
store's database, the default; with an ``ObjectStore`` the chunk bytes go to
S3-compatible storage instead, s3.py). One contract test-suite
(tests/logs/test_archive.py) holds each to the same behaviour.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from common.errors import SolsticeError


class ArchiveError(SolsticeError):
    """The log archive cannot be read or written."""


@dataclass(frozen=True)
class ArchivedLog:
    """How much of one attempt's log the archive holds."""

    job_id: str
    attempt: int
    host: str  # the node that wrote it
    lines: int  # sequences 1..lines are archived
    stored_bytes: int
    complete: bool  # the log ended and all of it is here


@dataclass(frozen=True)
class Chunk:
    """Lines ``first_sequence..last_sequence`` of an attempt: a serialized ``LogPage``."""

    first_sequence: int
    last_sequence: int
    page: bytes


@dataclass(frozen=True)
class ExpiredLog:
    """An archived attempt log that retention deletes."""

    job_id: str
    attempt: int
    stored_bytes: int


class LogArchive(abc.ABC):
    """The shared archive of attempt logs. Every method is safe to call from any node at once."""

    name: str  # "postgres", "sqlite", "s3"

    @abc.abstractmethod
    async def state(self, job_id: str, attempt: int) -> ArchivedLog | None:
        """What is archived of the attempt's log; None when nothing is (yet)."""

    @abc.abstractmethod
    async def append(self, job_id: str, attempt: int, host: str, chunk: Chunk) -> bool:
        """Store ``chunk`` if it continues the archived lines exactly (its first sequence
        is ``lines + 1``) and the log is not complete; False when it does not (another
        writer got there first, or a stale view). Atomic: the chunk and the new
        ``lines`` are stored together or not at all."""

    @abc.abstractmethod
    async def complete(self, job_id: str, attempt: int, host: str, lines: int) -> bool:
        """Mark the log complete at ``lines`` lines (0: the attempt logged nothing). False when
        fewer lines are archived (ship them first) or it was already complete."""

    @abc.abstractmethod
    async def chunks(self, job_id: str, attempt: int, from_sequence: int, limit: int = 8) -> list[Chunk]:
        """Up to ``limit`` chunks holding lines from ``from_sequence`` on, in order."""

    @abc.abstractmethod
    async def incomplete(self, host: str) -> list[ArchivedLog]:
        """The logs ``host`` started archiving and never completed (for its recovery at start)."""

    @abc.abstractmethod
    async def expired(self, job_ids: Sequence[str]) -> list[ExpiredLog]:
        """The archived logs of these jobs (retention)."""

    @abc.abstractmethod
    async def delete(self, job_ids: Sequence[str]) -> int:
        """Delete every archived log of these jobs; how many attempt logs went."""

    async def close(self) -> None:
        """Release what the archive holds open (object storage connections)."""


class ObjectStore(abc.ABC):
    """Where chunk bytes go when they do not stay in the database (S3-compatible storage)."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing it)."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``ArchiveError`` when there are none."""

    @abc.abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Delete these keys; missing ones are no error."""

    async def close(self) -> None:
        """Release connections."""
