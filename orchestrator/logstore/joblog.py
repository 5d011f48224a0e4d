"""One job attempt's durable log: append batches, follow live.

Each batch becomes one frame, written and ``fdatasync``ed on the log's
writer thread before ``append`` returns, so the sequence it returns is
durable (one sync per batch, not per line). Followers read the
file itself up to the durable end, so they never see a line that could still
be lost, and they wake on every append and on close.

A closed log is immutable and holds no resources: closing it ends its
writer thread and closes its descriptors (readers then open the file for
each read), and the store forgets it, so a node keeps nothing per finished
job however many it runs.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import functools
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from common.logbatch import LogLine, check, drop_first, iter_lines, line_count, mask_batch, secret_values
from common.masking import Masker
from common.rpc import runner_pb2
from orchestrator.logstore import frames
from orchestrator.logstore.chunks import LINE_PIECE, READ_CHUNK, lines_of, read_chunk
from orchestrator.logstore.errors import LogClosed, LogCorrupt, LogGap

TAIL_LINES = 50
T = TypeVar("T")


class JobLog:
    """The log of one job attempt. Create through ``LogStore.open``."""

    def __init__(self, log_path: Path, index_path: Path, masker: Masker,
                 on_closed: Callable[[JobLog], None] | None = None,
                 writers: ThreadPoolExecutor | None = None, readers: ThreadPoolExecutor | None = None) -> None:
        self.path = log_path
        self._index_path = index_path
        self._masker = masker
        self._loop = asyncio.get_running_loop()
        # The store's shared writer threads (starting a thread per job stalls the
        # loop on a busy host), or a thread of this log's own when used alone.
        self._owns_writer = writers is None
        self._writer: ThreadPoolExecutor | None = writers or ThreadPoolExecutor(1, thread_name_prefix="joblog")
        # Reads go to the store's few reader threads (None: the loop's default executor). Few
        # threads also mean few malloc arenas holding on to the memory of big reads.
        self._readers = readers
        self._serial = asyncio.Lock()  # one change at a time, in call order
        self._changed = asyncio.Event()
        self._fd = -1
        self._idx_fd = -1
        self._index_seqs: list[int] = []
        self._index_offsets: list[int] = []
        self._tail: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
        self.highest_sequence = 0
        self.closed = False
        self._end = 0  # durable end offset of the log file
        self._shut = False  # the store was shut down: reads refused
        self._reads = 0  # reads in flight on self._fd (it is closed only when none is)
        self._on_closed = on_closed

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Mask these values too in every line stored from now on."""
        self._masker.add(*secret_values(secrets))

    # -- opening and recovery -------------------------------------------------

    def _open_sync(self) -> None:
        """Open (or create) the files and recover the durable state from disk."""
        new = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # job output: its owner's only
        if new or os.fstat(self._fd).st_size == 0:
            os.write(self._fd, frames.MAGIC)
            os.fsync(self._fd)
            _fsync_dir(self.path.parent)
        elif os.pread(self._fd, len(frames.MAGIC), 0) != frames.MAGIC:
            raise LogCorrupt(f"{self.path} is not a Solstice job log")
        start = self._load_index()
        size = os.fstat(self._fd).st_size
        offset = start
        buf = os.pread(self._fd, size - start, start)
        last: frames.Frame | None = None
        for frame in frames.scan(buf, start):
            self._remember(frame.first_sequence, frame.offset)
            last = frame
            offset = frame.offset + frame.size
            if frame.end:
                self.closed = True
            else:
                self._note_tail(frame.payload)
        if last is not None:
            self.highest_sequence = last.last_sequence
        if offset < size:  # a torn write from a crash: never acknowledged, drop it
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        self._end = offset
        self._rewrite_index()

    def _load_index(self) -> int:
        """Offset from which the log must be scanned (the last verified index entry)."""
        try:
            raw = self._index_path.read_bytes()
        except FileNotFoundError:
            raw = b""
        entries = [frames.INDEX_ENTRY.unpack_from(raw, i) for i in range(0, len(raw) - 15, 16)]
        size = os.fstat(self._fd).st_size
        while entries:  # the index is written before the log is synced: verify
            seq, off = entries[-1]
            frame = None
            if off + frames.HEADER.size <= size:
                frame = frames.decode_at(os.pread(self._fd, size - off, off), 0, off)
            if frame is not None and frame.first_sequence == seq:
                break
            entries.pop()
        for seq, off in entries[:-1]:
            self._index_seqs.append(seq)
            self._index_offsets.append(off)
        if entries:
            seq, off = entries[-1]
            self.highest_sequence = seq - 1
            return int(off)
        return len(frames.MAGIC)

    def _remember(self, first_sequence: int, offset: int) -> None:
        self._index_seqs.append(first_sequence)
        self._index_offsets.append(offset)

    def _rewrite_index(self) -> None:
        tmp = self._index_path.with_suffix(".idx.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            entries = zip(self._index_seqs, self._index_offsets, strict=True)
            out.write(b"".join(frames.INDEX_ENTRY.pack(s, o) for s, o in entries))
        os.replace(tmp, self._index_path)
        self._idx_fd = os.open(self._index_path, os.O_WRONLY | os.O_APPEND)

    # -- writing ----------------------------------------------------------------

    async def append(self, batch: runner_pb2.LogBatch) -> int:
        """Store the lines of ``batch`` not stored yet; return the highest durable sequence.

        Lines at or below the highest stored sequence are dropped (a resend
        after a reconnect); a batch starting beyond the next sequence raises
        LogGap, a closed log LogClosed. Lines are masked before they are written.
        """
        check(batch)
        return await self._submit(self._append_sync, batch)

    async def close(self) -> None:
        """Write the end marker: followers finish, later appends are refused."""
        await self._submit(self._close_sync)
        self.drop_resources()

    def drop_resources(self) -> None:
        """Once closed: end the writer thread, close the descriptors, tell the store. Idempotent."""
        if not self.closed:
            return
        if self._writer is not None:
            if self._owns_writer:
                self._writer.shutdown(wait=False)  # idle: its last task (the close) has finished
            self._writer = None
        if self._idx_fd >= 0:
            os.close(self._idx_fd)
            self._idx_fd = -1
        if self._fd >= 0 and self._reads == 0:
            os.close(self._fd)
            self._fd = -1
        if self._on_closed is not None:
            on_closed, self._on_closed = self._on_closed, None
            on_closed(self)

    async def _submit(self, fn: Callable[..., T], *args: object) -> T:
        # Every change runs start to finish on a writer thread, one change of
        # this log at a time: the dedupe decision, the write, the fsync and the
        # state update. The change is a task of its own that holds the log's
        # lock until the thread is done, so a caller cancelled mid-append (a
        # runner hanging up, a server stopping) can never leave the file and
        # the in-memory view apart, nor let the next change overlap it.
        self._check_writable()
        return await asyncio.shield(self._loop.create_task(self._serialized(fn, *args)))

    async def _serialized(self, fn: Callable[..., T], *args: object) -> T:
        async with self._serial:
            self._check_writable()
            assert self._writer is not None
            try:
                return await self._loop.run_in_executor(self._writer, fn, *args)
            except RuntimeError as err:  # the store's writers shut down meanwhile
                raise LogClosed(f"the log store holding {self.path} was shut down") from err

    def _check_writable(self) -> None:
        if self._writer is None or self._shut:
            if self.closed and not self._shut:
                raise LogClosed(f"the log of job {self.path.parent.name} attempt {self.path.stem} is closed")
            raise LogClosed(f"the log store holding {self.path} was shut down")

    def _append_sync(self, batch: runner_pb2.LogBatch) -> int:
        count = line_count(batch)
        if self.closed:
            raise LogClosed(f"the log of job {self.path.parent.name} attempt {self.path.stem} is closed")
        if count == 0 or batch.first_sequence + count - 1 <= self.highest_sequence:
            return self.highest_sequence
        if batch.first_sequence > self.highest_sequence + 1:
            raise LogGap(
                f"log batch starts at {batch.first_sequence} but only "
                f"{self.highest_sequence} lines are stored",
                self.highest_sequence,
            )
        skip = self.highest_sequence + 1 - batch.first_sequence
        if skip:
            batch = drop_first(batch, skip)
            count -= skip
        stored = runner_pb2.LogBatch(first_sequence=batch.first_sequence)
        stored.runs.extend(batch.runs)
        stored.continuations.extend(batch.continuations)
        payload = mask_batch(self._masker, stored).SerializeToString()
        self._write_durable(frames.encode(batch.first_sequence, count, payload), batch.first_sequence)
        self.highest_sequence = batch.first_sequence + count - 1
        self._note_tail_batch(stored)
        self._loop.call_soon_threadsafe(self._wake)
        return self.highest_sequence

    def _close_sync(self) -> None:
        if self.closed:
            return
        self._write_durable(frames.encode(self.highest_sequence + 1, 0, b"", end=True), self.highest_sequence + 1)
        self.closed = True
        self._loop.call_soon_threadsafe(self._wake)

    def _write_durable(self, frame: bytes, first_sequence: int) -> None:
        offset = self._end
        written = os.pwrite(self._fd, frame, offset)
        if written != len(frame):
            # A partial frame fails its checksum and is cut off at the next open.
            raise OSError(f"short write to {self.path}")
        os.write(self._idx_fd, frames.INDEX_ENTRY.pack(first_sequence, offset))
        os.fdatasync(self._fd)
        # Followers on the event loop read these: offset before sequence, so a
        # sequence they find always has its offset; the end moves last.
        self._index_offsets.append(offset)
        self._index_seqs.append(first_sequence)
        self._end = offset + len(frame)

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def changed(self) -> None:
        """Return after the next append or close (for progress watchers)."""
        if not self.closed:
            await self._changed.wait()

    def release(self) -> None:
        """Close the file descriptors (the log stays on disk, open or closed).

        With the store's shared writers, the store shuts them down (letting a
        write in flight finish) before it releases its logs.
        """
        self._shut = True
        self._on_closed = None
        if self._writer is not None:
            if self._owns_writer:
                self._writer.shutdown(wait=True)  # let a write in flight finish
            self._writer = None
        for fd in (self._fd, self._idx_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._idx_fd = -1
        self._wake()  # followers find the store gone instead of waiting forever

    # -- reading ----------------------------------------------------------------

    def _note_tail(self, payload: bytes) -> None:
        self._note_tail_batch(runner_pb2.LogBatch.FromString(payload))

    def _note_tail_batch(self, batch: runner_pb2.LogBatch) -> None:
        wanted = TAIL_LINES
        picked: list[bytes] = []
        for run in reversed(batch.runs):
            parts = run.data.rsplit(b"\n", wanted)[-wanted:]
            picked[:0] = parts
            wanted -= len(parts)
            if wanted <= 0:
                break
        self._tail.extend(picked)

    def tail(self) -> list[str]:
        """The last stored lines (at most 50), decoded for display."""
        return [line.decode("utf-8", errors="replace") for line in self._tail]

    async def follow(self, from_sequence: int = 1) -> AsyncGenerator[LogLine, None]:
        """Stored lines from ``from_sequence``, then live ones; ends when the log is closed."""
        async for lines in self.chunks(lines_of, from_sequence, follow=True, piece_bytes=LINE_PIECE):
            for line in lines:
                yield line

    async def chunks(self, transform: Callable[[list[runner_pb2.LogBatch]], T], from_sequence: int = 1,
                     follow: bool = False, piece_bytes: int | None = None) -> AsyncIterator[T]:
        """The log from ``from_sequence`` on, one ``transform(batches)`` per piece of at most
        ``piece_bytes`` (``READ_CHUNK``) of frames - or one frame, if larger; reading, decoding and
        ``transform`` run on a worker thread. Ends at the durable end, or with ``follow`` once the
        log is closed."""
        pos = bisect.bisect_right(self._index_seqs, from_sequence) - 1
        offset = self._index_offsets[pos] if pos >= 0 else len(frames.MAGIC)
        while True:
            changed = self._changed
            end = self._end
            if offset < end:
                chunk = await self._in_thread(read_chunk, offset, end, from_sequence, transform, piece_bytes)
                offset = chunk.next_offset
                if chunk.value is not None:
                    yield chunk.value
                if chunk.ended:
                    return
                continue
            if self.closed or not follow:
                return
            self._check_open()
            await changed.wait()

    async def read_frames(self, from_sequence: int = 1, follow: bool = True) -> AsyncIterator[list[frames.Frame]]:
        """The stored frames holding sequences from ``from_sequence`` (the first may start
        before it), a read's worth at a time; then with ``follow`` live ones until the log is
        closed; without, up to the durable end as it is now. The end frame is not yielded.
        (The archive ships frames as they are stored; ``chunks`` decodes them.)"""
        pos = bisect.bisect_right(self._index_seqs, from_sequence) - 1
        offset = self._index_offsets[pos] if pos >= 0 else len(frames.MAGIC)
        stop = None if follow else self._end
        while True:
            changed = self._changed
            end = self._end if stop is None else stop
            if offset < end:
                buf = await self._pread(min(end - offset, READ_CHUNK), offset)
                found = list(frames.scan(buf, offset))
                if not found:  # a frame larger than READ_CHUNK
                    frame = frames.decode_at(await self._pread(end - offset, offset), 0, offset)
                    if frame is None:
                        raise LogCorrupt(f"{self.path}: unreadable frame at offset {offset}")
                    found = [frame]
                offset = found[-1].offset + found[-1].size
                done = found[-1].end
                wanted = [f for f in found if not f.end and f.last_sequence >= from_sequence]
                if wanted:
                    yield wanted
                if done:
                    return
                continue
            if self.closed or stop is not None:
                return
            self._check_open()
            await changed.wait()

    def _check_open(self) -> None:
        if self._shut:
            raise LogClosed(f"the log store holding {self.path} was shut down")

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(read, *args)`` on a worker thread, ``read(size, offset)`` reading the log file:
        through the log's descriptor, or the file itself once closed."""
        try:
            return await self._read_in_thread(fn, *args)
        except RuntimeError as err:  # the store's readers shut down meanwhile
            raise LogClosed(f"the log store holding {self.path} was shut down") from err

    async def _read_in_thread(self, fn: Callable[..., T], *args: object) -> T:
        self._check_open()
        if self._fd < 0:
            if not self.closed:
                raise LogClosed(f"the log store holding {self.path} was shut down")
            path = self.path
            return await self._loop.run_in_executor(
                self._readers, functools.partial(fn, lambda size, offset: _pread_path(path, size, offset), *args))
        fd = self._fd
        self._reads += 1
        try:
            return await self._loop.run_in_executor(
                self._readers, functools.partial(fn, lambda size, offset: os.pread(fd, size, offset), *args))
        finally:
            self._reads -= 1
            if self._reads == 0 and self.closed and self._writer is None and not self._shut:
                self.drop_resources()  # the close happened while this read used the descriptor

    async def _pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (see ``_in_thread``)."""
        return await self._in_thread(lambda read: read(size, offset))

    async def read_all(self) -> list[LogLine]:
        """Every stored line (ends at the durable end even if the log is open)."""
        lines: list[LogLine] = []
        buf = await self._pread(self._end, 0)
        for frame in frames.scan(memoryview(buf)[len(frames.MAGIC) :], len(frames.MAGIC)):
            if not frame.end:
                lines.extend(iter_lines(runner_pb2.LogBatch.FromString(frame.payload)))
        return lines


def _pread_path(path: Path, size: int, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
