"""Reading log pages back as lines in tests."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from common.logbatch import LogLine, iter_lines
from common.rpc import admin_pb2


def lines_of(pages: Iterable[admin_pb2.LogPage]) -> list[LogLine]:
    """Every line of ``pages``, in order (keepalive and end pages hold none)."""
    return [line for page in pages for line in iter_lines(page)]


async def collect(pages: AsyncIterable[admin_pb2.LogPage]) -> list[admin_pb2.LogPage]:
    """Every page but keepalives."""
    return [page async for page in pages if not page.keepalive]
