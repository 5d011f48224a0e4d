"""The raw text of a job attempt's log over HTTP, streamed a page at a time.

    return await serve_log(request, reader, job_id, attempt)   # from an aiohttp handler

The body is what ``ciadm logs`` prints (``common.logtext``: Solstice's own
lines start with ``## ``, a long line split in transit is whole again, a log
cut short by a lost host ends with a ``## `` line saying so). It is written
as the pages are read - files and archive chunks are read in threads, the
response waits for the client at each page - so a log of any size costs the
server about a page of memory and never holds the event loop.

* ``?tail=N`` - only the last N lines (1..1,000,000).
* ``Range: bytes=A-B`` / ``bytes=A-`` / ``bytes=-N`` - 206 with that part
  (``curl -C -`` resumes a download); a range past the end is 416. The size
  of the text is counted first (one pass more over the log), so a ranged
  answer names the whole length. A complete log has a strong ``ETag`` that
  ``If-Range`` can name; a log still growing has none (its length moves).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from aiohttp import web

from common.logtext import SYSTEM_PREFIX, TextBlocks
from orchestrator.logstore.errors import LogNotFound, LogStoreError
from orchestrator.logstore.reader import LogReader

MAX_TAIL = 1_000_000
_TAIL = re.compile(r"[0-9]{1,7}")
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


class _Text:
    """The log's text, a block per page, with what the last page said."""

    def __init__(self) -> None:
        self.complete = False
        self.lines = 0


async def _blocks(reader: LogReader, job_id: str, attempt: int, from_sequence: int,
                  state: _Text) -> AsyncGenerator[bytes, None]:
    text = TextBlocks()
    async for page in reader.pages(job_id, attempt, from_sequence):
        block = text.page(page)
        if page.runs:
            state.lines = page.first_sequence + sum(run.lines for run in page.runs) - 1
        if page.ended:
            block += text.line(SYSTEM_PREFIX + page.ended.encode())
        if page.end:
            state.complete = not page.ended
        if block:
            yield block
    tail = text.finish()
    if tail:
        yield tail


async def _length(reader: LogReader, job_id: str, attempt: int, from_sequence: int) -> tuple[int, _Text]:
    state = _Text()
    total = 0
    async for block in _blocks(reader, job_id, attempt, from_sequence, state):
        total += len(block)
    return total, state


def _parse_range(header: str, total: int) -> tuple[int, int] | None:
    """(first, last) inclusive of a single ``bytes=`` range; None when it is not one (serve it all).
    ``web.HTTPRequestRangeNotSatisfiable`` when it lies past the end."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first_text, last_text = match.groups()
    if not first_text:  # the last N bytes
        count = int(last_text)
        if count == 0:
            raise _unsatisfiable(total)
        return max(0, total - count), total - 1
    first = int(first_text)
    last = int(last_text) if last_text else total - 1
    if first >= total or last < first:
        raise _unsatisfiable(total)
    return first, min(last, total - 1)


def _unsatisfiable(total: int) -> web.HTTPRequestRangeNotSatisfiable:
    return web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{total}"},
                                              text="the range asked for lies past the end of the log\n")


async def serve_log(request: web.Request, reader: LogReader, job_id: str, attempt: int) -> web.StreamResponse:
    """Answer ``request`` with the attempt's log (see the module docstring)."""
    start = 1
    tail = request.query.get("tail")
    if tail is not None:
        if not _TAIL.fullmatch(tail) or not 1 <= int(tail) <= MAX_TAIL:
            raise web.HTTPBadRequest(text=f"tail must be a number of lines, 1..{MAX_TAIL:,}\n")
        try:
            stored = await reader.lines_stored(job_id, attempt)
        except LogNotFound:
            stored = 0
        start = max(1, stored - int(tail) + 1)
    headers = {"Content-Type": "text/plain; charset=utf-8", "Accept-Ranges": "bytes",
               "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    status, first, last = 200, 0, -1
    try:
        if "Range" in request.headers:
            total, state = await _length(reader, job_id, attempt, start)
            etag = f'"{job_id}-{attempt}-{state.lines}-{start}"' if state.complete else ""
            if etag:
                headers["ETag"] = etag
            wanted = request.headers.get("If-Range")
            span = _parse_range(request.headers["Range"], total) if wanted is None or wanted == etag else None
            if span is not None:
                status, (first, last) = 206, span
                headers["Content-Range"] = f"bytes {first}-{last}/{total}"
                headers["Content-Length"] = str(last - first + 1)
        blocks = _blocks(reader, job_id, attempt, start, _Text())
        block = await anext(blocks, None)  # a missing log is an error status, not an empty 200
    except LogNotFound as err:
        raise web.HTTPNotFound(text=f"{err}\n") from None
    except LogStoreError as err:
        raise web.HTTPServiceUnavailable(text=f"the log cannot be read now: {err}\n") from None
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    sent = 0  # bytes of the text passed so far
    while block is not None:
        if status == 206:
            lo, hi = max(first - sent, 0), min(last + 1 - sent, len(block))
            if lo < hi:
                await response.write(block[lo:hi])
            sent += len(block)
            if sent > last:
                await blocks.aclose()
                break
        else:
            await response.write(block)
        # A failure from here on propagates: the status is sent, so aiohttp cuts the connection
        # and the client sees the body incomplete (never a short log that looks whole).
        block = await anext(blocks, None)
    await response.write_eof()
    return response
