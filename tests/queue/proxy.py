"""A TCP proxy between a client and RabbitMQ whose connections a test can cut.

Cutting aborts both sides of every open connection, as a network failure
would; new connections are accepted again at once, so robust clients
reconnect through the same address - unless ``refusing`` is set, which makes
the proxy hang up on every new connection (the broker looks down).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.cuts = 0
        self.accepted = 0
        self.refused = 0
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def dsn_for(self, dsn: str) -> str:
        """A ``postgresql://`` ``dsn`` pointed at this proxy instead of the server."""
        parts = urlsplit(dsn)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit((parts.scheme, f"{user}127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment))

    def url_for(self, url: str) -> str:
        """``url`` pointed at this proxy instead of the broker, reconnecting after 1 s (not 5)."""
        parts = urlsplit(url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        query = "&".join(q for q in (parts.query, "reconnect_interval=1") if q)
        return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{self.port}", parts.path, query, parts.fragment))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    def outage(self) -> None:
        """The service goes away: every connection cut, every new one refused (until ``restore``)."""
        self.refusing = True
        self.cut()

    def restore(self) -> None:
        """The service is back: new connections go through again."""
        self.refusing = False

    def cut(self) -> int:
        """Abort every open connection; returns how many sockets were cut."""
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        self._writers.clear()
        self.cuts += 1
        return len(writers)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.wait(set(self._pipes))
        if self._server is not None:
            await self._server.wait_closed()
