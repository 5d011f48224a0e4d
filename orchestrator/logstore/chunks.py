"""Reading a job log in bounded pieces.

``read_chunk`` is the one way stored lines come back: at most ``READ_CHUNK``
bytes of frames from an offset (one larger frame whole), decoded into
batches trimmed to ``from_sequence``. It is synchronous and runs on a worker
thread (``JobLog.chunks``), so serving a log of any size holds a few
megabytes at a time and never blocks the event loop; readers that want
something else than batches (lines, for ``JobLog.follow``) pass a
``transform`` that also runs on that thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from common.logbatch import LogLine, drop_first, iter_lines
from common.rpc import runner_pb2
from orchestrator.logstore import frames
from orchestrator.logstore.errors import LogCorrupt

READ_CHUNK = 4 * 1024 * 1024
# Readers that make an object per line take the log in pieces this big (about one
# batch, at most a few hundred thousand lines), so short lines cannot multiply memory.
LINE_PIECE = 256 * 1024
T = TypeVar("T")
Read = Callable[[int, int], bytes]  # (size, offset) -> bytes


@dataclass(frozen=True)
class Chunk(Generic[T]):
    """What one read gave: the transformed batches (None if none), where to go on, whether the log ended."""

    value: T | None
    next_offset: int
    ended: bool


def read_chunk(read: Read, offset: int, end: int, from_sequence: int,
               transform: Callable[[list[runner_pb2.LogBatch]], T], size: int | None = None) -> Chunk[T]:
    """The frames in ``size`` bytes (default ``READ_CHUNK``) at ``offset`` (before ``end``, the durable
    end), their batches from ``from_sequence`` on."""
    buf = read(min(end - offset, size or READ_CHUNK), offset)
    found = list(frames.scan(buf, offset))
    if not found:  # a frame larger than READ_CHUNK: read it whole
        frame = frames.decode_at(read(end - offset, offset), 0, offset)
        if frame is None:
            raise LogCorrupt(f"unreadable log frame at offset {offset}")
        found = [frame]
    batches: list[runner_pb2.LogBatch] = []
    ended = False
    for frame in found:
        offset = frame.offset + frame.size
        if frame.end:
            ended = True
            break
        if frame.last_sequence < from_sequence:
            continue
        batch = runner_pb2.LogBatch.FromString(frame.payload)
        if batch.first_sequence < from_sequence:
            batch = drop_first(batch, from_sequence - batch.first_sequence)
        batches.append(batch)
    return Chunk(transform(batches) if batches else None, offset, ended)


def lines_of(batches: Iterable[runner_pb2.LogBatch]) -> list[LogLine]:
    """Every line of ``batches``, in order (a ``transform`` for line-by-line readers)."""
    return [line for batch in batches for line in iter_lines(batch)]
