"""A Unix-socket relay between a client and a node's admin socket whose connections a test can cut.

The Unix-socket counterpart of tests/queue/proxy.py's ``TcpProxy``: the client
(``ciadm``) dials ``path``, each connection is relayed to ``target``, and
``cut()`` ends every relayed connection at once, as a node restarting its
listener or a dying relay would. New connections are taken at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from common.streams import Connection, StreamRelay


class UnixRelay(StreamRelay):
    def __init__(self, path: Path, target: Path) -> None:
        super().__init__()
        self.path = path
        self.target = target
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # cut: asyncio would log the cancel as an error
            await super().accept(reader, writer)

    async def upstream(self, writer: asyncio.StreamWriter) -> Connection | None:
        self.accepted += 1
        return await asyncio.open_unix_connection(str(self.target))

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self.accept, path=str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.cut()
        if self._server is not None:
            await self._server.wait_closed()
