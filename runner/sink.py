"""From a step's pipes to sealed log batches: split, chunk, mask, number.

Lines are handled in blocks, never one by one: a block of complete lines is
masked with one regex pass and becomes one run of the batch, which is what
lets a million-line step reach durable storage in about a second.

A job's output is capped at ``limit_bytes`` (its lines and their newlines;
Solstice's own notes are not counted): the lines that fit are kept, one note
says the log was truncated, and later output is read (so the step never
blocks on a full pipe) and dropped. ``on_limit`` hears of it once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from common.logbatch import SYSTEM, mask_data
from common.masking import Masker
from common.rpc import runner_pb2
from runner.spool import Spool

READ_BYTES = 1 << 18


class LogSink:
    """Numbers lines job-wide and seals them into batches in the spool."""

    def __init__(self, job: runner_pb2.JobRef, masker: Masker, spool: Spool,
                 batch_bytes: int, batch_delay: float, chunk_bytes: int,
                 limit_bytes: int = 0, on_limit: Callable[[int], None] | None = None) -> None:
        self.job = job
        self.masker = masker
        self.spool = spool
        self.batch_bytes = batch_bytes
        self.batch_delay = batch_delay
        self.chunk_bytes = chunk_bytes
        self.next_sequence = 1
        self._batch: runner_pb2.LogBatch | None = None
        self._batch_lines = 0
        self._batch_size = 0
        self._opened = asyncio.Event()  # a batch has lines waiting for the timer
        self.limit_bytes = limit_bytes  # 0 = no limit
        self.on_limit = on_limit
        self.logged_bytes = 0  # output counted against the limit
        self.truncated = False

    @property
    def last_sequence(self) -> int:
        return self.next_sequence - 1

    def add(self, step: int, stream: int, at: float, data: bytes, first_continues: bool = False) -> None:
        """Add the ``\\n``-joined lines ``data`` (no trailing newline)."""
        data = mask_data(self.masker, data)
        if self.limit_bytes and stream != SYSTEM:
            if self.truncated:
                return
            size = len(data) + 1
            room = self.limit_bytes - self.logged_bytes
            if size > room:
                self._truncate(step, stream, at, data, first_continues, room)
                return
            self.logged_bytes += size
        self._add(step, stream, at, data, first_continues)

    def _truncate(self, step: int, stream: int, at: float, data: bytes, first_continues: bool, room: int) -> None:
        """Keep the whole lines of ``data`` that fit in ``room`` bytes, then say the log ends here."""
        cut = data.rfind(b"\n", 0, room)
        if cut > 0:
            self._add(step, stream, at, data[:cut], first_continues)
            self.logged_bytes += cut + 1
        self.truncated = True
        self.note(step, f"log truncated at {self.limit_bytes} bytes (this job's log limit): the rest of "
                        "its output is not kept anywhere")
        if self.on_limit is not None:
            self.on_limit(self.limit_bytes)

    def _add(self, step: int, stream: int, at: float, data: bytes, first_continues: bool) -> None:
        conts: list[int] = [0] if first_continues else []
        if len(data) > self.chunk_bytes:
            parts = data.split(b"\n")
            if max(map(len, parts)) > self.chunk_bytes:
                data, conts = self._chunked(parts, first_continues)
        lines = data.count(b"\n") + 1
        batch = self._current()
        first = self.next_sequence
        batch.runs.add(step=step, stream=stream, at=at, lines=lines, data=data)
        batch.continuations.extend(first + i for i in conts)
        self.next_sequence += lines
        self._batch_lines += lines
        self._batch_size += len(data) + 32
        if self._batch_size >= self.batch_bytes:
            self.seal()

    def _chunked(self, parts: list[bytes], first_continues: bool) -> tuple[bytes, list[int]]:
        size = self.chunk_bytes
        pieces: list[bytes] = []
        conts: list[int] = []
        for i, line in enumerate(parts):
            for j in range(0, max(len(line), 1), size):
                if j > 0 or (i == 0 and first_continues):
                    conts.append(len(pieces))
                pieces.append(line[j : j + size])
        return b"\n".join(pieces), conts

    def note(self, step: int, text: str) -> None:
        """A line Solstice itself adds (``SYSTEM`` stream): step banners, exit codes."""
        self.add(step, SYSTEM, time.time(), text.replace("\n", " ").encode())

    def _current(self) -> runner_pb2.LogBatch:
        if self._batch is None:
            self._batch = runner_pb2.LogBatch(first_sequence=self.next_sequence)
            self._batch.job.CopyFrom(self.job)
            self._opened.set()
        return self._batch

    def seal(self) -> None:
        """Move the open batch to the spool (and so towards the orchestrator)."""
        batch, self._batch = self._batch, None
        if batch is not None:
            self.spool.append(batch, self._batch_lines)
        self._batch_lines = self._batch_size = 0
        self._opened.clear()

    async def run_timer(self) -> None:
        """Seal a batch ``batch_delay`` after its first line, so quiet steps still stream."""
        while True:
            await self._opened.wait()
            await asyncio.sleep(self.batch_delay)
            self.seal()


async def pump(reader: asyncio.StreamReader, sink: LogSink, step: int, stream: int) -> None:
    """Read one pipe to EOF into ``sink``; a line longer than the chunk limit
    leaves in chunks, each after the first marked as a continuation."""
    pending = b""
    continues = False  # the next bytes continue a line already (partly) sent
    chunk = sink.chunk_bytes
    while True:
        block = await reader.read(READ_BYTES)
        if not block:
            break
        at = time.time()
        buf = pending + block if pending else block
        cut = buf.rfind(b"\n")
        if cut >= 0:
            sink.add(step, stream, at, buf[:cut], continues)
            continues = False
            pending = buf[cut + 1 :]
        else:
            pending = buf
        # A line longer than a chunk leaves in pieces before its end is read;
        # never cut through a secret, and keep back enough bytes that one
        # still arriving is masked whole.
        hold = max(sink.masker.longest - 1, 0)
        while len(pending) >= chunk + hold:
            cut = _safe_cut(sink.masker, pending, chunk)
            sink.add(step, stream, at, pending[:cut], continues)
            continues = True
            pending = pending[cut:]
    if pending:
        sink.add(step, stream, time.time(), pending, continues)


def _safe_cut(masker: Masker, data: bytes, cut: int) -> int:
    """``cut``, or the edge of the secret it would split (a chunk may then exceed
    the limit before masking; ``LogSink.add`` chunks what is left after it)."""
    for start, end in masker.spans_bytes(data[: cut + masker.longest]):
        if start < cut < end:
            return start if start > 0 else end
    return cut
