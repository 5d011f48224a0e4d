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


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class StreamRelay:
    """Relays each accepted connection to the one ``upstream`` opens for it; owns a task per connection.

    Subclasses define ``upstream`` (None: drop the caller) and hand ``accept`` to
    ``asyncio.start_unix_server``; ``cut()`` ends every relayed connection.
    """

    def __init__(self) -> None:
        self._connections: set[asyncio.Task[None]] = set()

    async def upstream(self, writer: asyncio.StreamWriter) -> Connection | None:
        raise NotImplementedError

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            up = await self.upstream(writer)
            if up is None:
                return
            try:
                await splice((reader, writer), up)
            finally:
                up[1].close()
        finally:
            writer.close()
            self._connections.discard(task)

    async def cut(self) -> None:
        """Cancel every relayed connection and wait for them to end."""
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
