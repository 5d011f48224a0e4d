"""Log pages: stored batches read back in runs, as ``admin_pb2.LogPage``.

A stored frame's payload is a serialized ``LogBatch`` without its job field,
and ``LogPage`` has the same field numbers for ``first_sequence``, ``runs``
and ``continuations``. Serialized protobuf messages concatenate into one
message (repeated fields append, and for a scalar the last value wins), so the
payloads of consecutive frames joined and followed by the first frame's
``first_sequence`` ARE the page of all their lines: ``join_payloads`` builds a
page of a megabyte with one parse, not one message per line.

``with_keepalive`` makes a page stream say it is alive while it waits:
followers and the proxies between them tell a stalled stream from a quiet one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from common.logbatch import drop_first
from common.rpc import admin_pb2
from orchestrator.logstore.frames import Frame

# A page holds up to about this many bytes of lines (more when one stored batch does).
PAGE_BYTES = 1024 * 1024
KEEPALIVE_SECONDS = 5.0
_FIRST_SEQUENCE_TAG = b"\x10"  # field 2, varint


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def join_payloads(first_sequence: int, payloads: Iterable[bytes]) -> bytes:
    """One serialized page of consecutive stored batches (see the module docstring)."""
    return b"".join(payloads) + _FIRST_SEQUENCE_TAG + _varint(first_sequence)


def page_of(first_sequence: int, payloads: Iterable[bytes], from_sequence: int = 1) -> admin_pb2.LogPage:
    """The page of consecutive stored batches, without the lines before ``from_sequence``."""
    page = admin_pb2.LogPage.FromString(join_payloads(first_sequence, payloads))
    return trim(page, from_sequence)


def line_count(page: admin_pb2.LogPage) -> int:
    return sum(run.lines for run in page.runs)


def last_sequence(page: admin_pb2.LogPage) -> int:
    """The page's last line (``first_sequence - 1`` for a page without lines)."""
    return page.first_sequence + line_count(page) - 1


def trim(page: admin_pb2.LogPage, from_sequence: int) -> admin_pb2.LogPage:
    """``page`` without its lines before ``from_sequence`` (itself when there is nothing to drop)."""
    skip = from_sequence - page.first_sequence
    if skip <= 0 or not page.runs:
        return page
    return drop_first(page, skip)


async def frame_pages(reads: AsyncIterator[list[Frame]], from_sequence: int) -> AsyncIterator[admin_pb2.LogPage]:
    """Pages of what ``JobLog.read_frames`` yields: consecutive frames of one read joined
    up to ``PAGE_BYTES`` (a page never waits for a frame not read yet)."""
    async for found in reads:
        pending: list[bytes] = []
        first = size = 0
        for frame in found:
            if pending and size + len(frame.payload) > PAGE_BYTES:
                yield page_of(first, pending, from_sequence)
                pending, size = [], 0
            if not pending:
                first = frame.first_sequence
            pending.append(frame.payload)
            size += len(frame.payload)
        if pending:
            yield page_of(first, pending, from_sequence)


async def with_keepalive(pages: AsyncIterator[admin_pb2.LogPage],
                         every: float = KEEPALIVE_SECONDS) -> AsyncIterator[admin_pb2.LogPage]:
    """``pages``, with a ``keepalive`` page whenever none came for ``every`` seconds."""
    it = pages.__aiter__()
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield admin_pb2.LogPage(keepalive=True)
                continue
            current, pending = pending, None
            try:
                page = current.result()
            except StopAsyncIteration:
                return
            yield page
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
