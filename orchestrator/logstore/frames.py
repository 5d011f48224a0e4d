"""The on-disk format of a job log (documented in docs/runner.md).

``<attempt>.log`` starts with the 8-byte magic ``SOLLOG1\\n`` and then holds
frames, each one stored batch::

    header  24 bytes, big-endian:
            u32 payload length
            u32 CRC-32 of (the 16 header bytes that follow it + payload)
            u64 first sequence
            u32 line count
            u16 flags (1 = end of log)
            u16 reserved (0)
    payload a serialized runner_pb2.LogBatch without its job field
            (already masked); empty for the end frame

``<attempt>.idx`` is a sparse index: 16-byte entries (u64 first sequence, u64
frame offset), one per frame. It is a cache: it is never fsynced, every entry
is checked against the log before use, and it is rebuilt from the log when
it is behind or wrong.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"SOLLOG1\n"
HEADER = struct.Struct(">IIQIHH")
INDEX_ENTRY = struct.Struct(">QQ")
FLAG_END = 1
# A frame larger than this is corruption, not data: batches are bounded far below.
MAX_PAYLOAD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as found in a log file."""

    offset: int
    first_sequence: int
    count: int
    end: bool
    payload: bytes

    @property
    def size(self) -> int:
        return HEADER.size + len(self.payload)

    @property
    def last_sequence(self) -> int:
        return self.first_sequence + self.count - 1


def encode(first_sequence: int, count: int, payload: bytes, end: bool = False) -> bytes:
    flags = FLAG_END if end else 0
    tail = HEADER.pack(0, 0, first_sequence, count, flags, 0)[8:]
    crc = zlib.crc32(payload, zlib.crc32(tail))
    return HEADER.pack(len(payload), crc, first_sequence, count, flags, 0) + payload


def decode_at(buf: bytes | memoryview, pos: int, base: int) -> Frame | None:
    """The frame starting at ``buf[pos]`` (file offset ``base + pos``), or None
    when it is incomplete or fails its checksum (a torn write)."""
    if len(buf) - pos < HEADER.size:
        return None
    length, crc, first, count, flags, _ = HEADER.unpack_from(buf, pos)
    if length > MAX_PAYLOAD or len(buf) - pos - HEADER.size < length:
        return None
    start = pos + HEADER.size
    payload = bytes(buf[start : start + length])
    tail = bytes(buf[pos + 8 : start])
    if zlib.crc32(payload, zlib.crc32(tail)) != crc:
        return None
    return Frame(base + pos, first, count, bool(flags & FLAG_END), payload)


def scan(buf: bytes | memoryview, base: int) -> Iterator[Frame]:
    """Consecutive valid frames of ``buf``; stops at the first invalid one."""
    pos = 0
    while True:
        frame = decode_at(buf, pos, base)
        if frame is None:
            return
        yield frame
        pos += frame.size
