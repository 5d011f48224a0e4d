"""The runner's local copy of every log batch, kept until acknowledged.

A batch is written to ``<dir>/<job>-<attempt>.spool`` (u32 length +
serialized LogBatch) the moment it is sealed, before any attempt to send it;
the shipper reads unacknowledged batches back from the file after a
reconnect. The file survives the runner: when the orchestrator is gone the
logs stay on the VM's disk. (No fsync: the spool guards against a lost
network and a crashed runner, not a crashed VM, which ends the job anyway.)

What the orchestrator acknowledged leaves the disk: the file is emptied
when every batch is acknowledged, and rewritten with only the
unacknowledged ones once the acknowledged part passes ``compact_bytes`` and
outweighs the rest, so the spool holds about what is in flight (at most
twice that, plus ``compact_bytes``), not the whole log (``discard``
removes it after the job completed). Unacknowledged batches are bounded by
``max_bytes``. A batch that cannot be written - the VM's disk is full, or
the bound is reached - is kept in memory (no line is lost) and ``full`` is
set with the reason: the runner stops the job (failed, "VM disk full")
rather than let the step block.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.rpc import runner_pb2

LENGTH = struct.Struct(">I")
COMPACT_BYTES = 4 << 20
MAX_BYTES = 1 << 30
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class Spooled:
    first: int
    last: int
    offset: int  # in the file; -1 when the batch is held in memory (``data``)
    length: int
    data: bytes | None = None


class Spool:
    """Batches on disk plus the index of those not acknowledged yet."""

    def __init__(self, path: Path, compact_bytes: int = COMPACT_BYTES, max_bytes: int = MAX_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.compact_bytes = compact_bytes
        self.max_bytes = max_bytes
        self._fd = self._open(truncate=True)
        self._size = 0
        self._pending: collections.deque[Spooled] = collections.deque()
        self.acked = 0  # highest sequence the orchestrator holds durably
        self.last_sequence = 0  # highest sequence spooled
        self.full = asyncio.Event()  # set once a batch could not be written; ``full_reason`` says why
        self.full_reason = ""
        self._changed = asyncio.Event()
        self._generation = 0  # raised whenever the file is emptied or compacted (offsets change)

    def _open(self, truncate: bool = False) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        return os.open(self.path, flags, 0o600)

    @property
    def disk_bytes(self) -> int:
        """How much of the spool is on disk."""
        return self._size

    def append(self, batch: runner_pb2.LogBatch, count: int) -> None:
        raw = batch.SerializeToString()
        last = batch.first_sequence + count - 1
        self._pending.append(self._write(batch.first_sequence, last, raw))
        self.last_sequence = last
        self._wake()

    def _write(self, first: int, last: int, raw: bytes) -> Spooled:
        """The batch on disk; in memory (and ``full`` set) when the disk or the bound does not take it."""
        record = LENGTH.pack(len(raw)) + raw
        if not self.full.is_set():
            if self._size + len(record) > self.max_bytes + self._acked_bytes():
                self._mark_full(f"log spool full: {self.max_bytes} bytes of log not yet delivered "
                                "(the orchestrator is unreachable or slower than the step's output)")
            else:
                try:
                    written = os.write(self._fd, record)
                    if written != len(record):
                        raise OSError(errno.ENOSPC, "short write")
                except OSError as err:
                    self._undo_partial()
                    self._mark_full(f"VM disk full: cannot write the log spool {self.path}: {err.strerror}"
                                    if err.errno in _DISK_FULL
                                    else f"cannot write the log spool {self.path}: {err.strerror}")
                else:
                    entry = Spooled(first, last, self._size + LENGTH.size, len(raw))
                    self._size += len(record)
                    return entry
        return Spooled(first, last, -1, len(raw), raw)

    def _undo_partial(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            pass  # the next read of the index never reaches past _size

    def _mark_full(self, reason: str) -> None:
        if not self.full.is_set():
            self.full_reason = reason
            self.full.set()

    def _acked_bytes(self) -> int:
        """Bytes at the start of the file that hold only acknowledged batches."""
        for entry in self._pending:
            if entry.offset >= 0:
                return entry.offset - LENGTH.size
        return self._size

    def ack(self, durable: int) -> None:
        if durable <= self.acked:
            return
        self.acked = durable
        while self._pending and self._pending[0].last <= durable:
            self._pending.popleft()
        self._reclaim()
        self._wake()

    def _reclaim(self) -> None:
        """Give back the disk the acknowledged batches use (see the module docstring)."""
        if self._fd < 0 or self._size == 0:
            return
        done = self._acked_bytes()
        if done == self._size:
            os.ftruncate(self._fd, 0)  # O_APPEND: the next batch goes to the start again
            self._size = 0
            self._generation += 1
        elif done >= self.compact_bytes and done >= self._size - done:
            # Only once the acknowledged part outweighs what is left: each rewrite copies at most
            # as much as was acknowledged, so catching up on a long backlog stays linear.
            self._compact(done)

    def _compact(self, done: int) -> None:
        tmp = self.path.with_name(self.path.name + ".new")
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                pos = done
                while pos < self._size:
                    chunk = os.pread(self._fd, min(1 << 20, self._size - pos), pos)
                    os.write(out, chunk)
                    pos += len(chunk)
            finally:
                os.close(out)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return  # kept as it is; tried again at the next ack
        os.close(self._fd)
        self._fd = self._open()
        self._pending = collections.deque(
            e if e.offset < 0 else Spooled(e.first, e.last, e.offset - done, e.length) for e in self._pending)
        self._size -= done
        self._generation += 1

    def unsent(self, after: int) -> Iterator[tuple[int, bytes]]:
        """(last sequence, serialized batch) of spooled batches ending after
        ``after``, read from the file one at a time (a long outage can leave
        far more spooled than should sit in memory). Acks that arrive while
        the caller sends may empty or compact the file: each batch is read
        right before it is yielded, from where it is then, and batches
        acknowledged meanwhile are skipped."""
        generation = self._generation
        entries = list(self._pending)
        index = 0
        while index < len(entries):
            if generation != self._generation:  # the file was emptied or compacted since the last yield
                generation = self._generation
                entries, index = list(self._pending), 0
                continue
            entry = entries[index]
            index += 1
            if entry.last <= max(after, self.acked):
                continue
            raw = entry.data if entry.data is not None else os.pread(self._fd, entry.length, entry.offset)
            yield entry.last, raw
            after = entry.last

    @property
    def all_acked(self) -> bool:
        return self.acked >= self.last_sequence

    def change_event(self) -> asyncio.Event:
        """An event set by the next append or ack."""
        return self._changed

    async def changed(self, timeout: float | None = None) -> None:
        """Wait for the next append or ack (or ``timeout`` seconds)."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Close and remove the file: everything in it was delivered and the job is complete."""
        self.close()
        self.path.unlink(missing_ok=True)
