"""Relaying one byte stream into another (the local driver's runner relay, the admin socket)."""

from __future__ import annotations

import asyncio
import contextlib

BUFFER = 256 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream (or a dropped connection), then pass the end on (half-close)."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Both directions between connections ``a`` and ``b`` until both have ended."""
    await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
