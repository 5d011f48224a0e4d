"""A TCP proxy between a client and a service (RabbitMQ, PostgreSQL) whose connections a test can cut.

Cutting aborts both sides of every open connection, as a network failure
would; new connections are accepted again at once, so robust clients
reconnect through the same address - unless ``refusing`` is set, which makes
the proxy hang up on every new connection (the service looks down).
``down()``/``restore()`` do both until told otherwise, ``outage()`` for the
length of a block. The shared services
themselves are never stopped: other tests use them at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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

    def url_for(self, url: str) -> str:
        """``url`` pointed at this proxy instead of the broker, reconnecting after 1 s (not 5)."""
        parts = urlsplit(url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        query = "&".join(q for q in (parts.query, "reconnect_interval=1") if q)
        return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{self.port}", parts.path, query, parts.fragment))

    def dsn_for(self, dsn: str) -> str:
        """A PostgreSQL ``dsn`` pointed at this proxy."""
        parts = urlsplit(dsn)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment))

    def down(self) -> None:
        """The service goes away: every open connection cut, every new one refused (until ``restore``)."""
        self.refusing = True
        self.cut()

    def restore(self) -> None:
        """The service is back: new connections go through again."""
        self.refusing = False

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """The service is unreachable for the block (``down`` ... ``restore``)."""
        self.down()
        try:
            yield
        finally:
            self.restore()

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


@contextlib.asynccontextmanager
async def proxy_to(url: str, default_port: int) -> AsyncIterator[TcpProxy]:
    """A started proxy to the service at ``url`` (an amqp:// or postgresql:// URL), closed after the block."""
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
