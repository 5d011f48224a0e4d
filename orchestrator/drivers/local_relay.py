"""The only way out of a network-isolated local runner: a Unix socket to the orchestrator.

With ``isolate_network`` the local driver starts the runner in a fresh network
namespace (``unshare --net``): no interfaces but a downed loopback, so a job
reaches nothing. A filesystem Unix socket still crosses that boundary, so the
driver listens on one per VM and copies bytes to and from the orchestrator's
gRPC address; the runner dials ``unix:<path>``. Nothing else is forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from common.streams import Connection, StreamRelay

log = logging.getLogger(__name__)


class Relay(StreamRelay):
    """Listens on ``path`` and relays each connection to ``target`` (``host:port``)."""

    def __init__(self, path: Path, target: str) -> None:
        super().__init__()
        self.path = path
        host, _, port = target.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._server: asyncio.base_events.Server | None = None

    @property
    def address(self) -> str:
        """What the runner dials."""
        return f"unix:{self.path}"

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self.accept, path=str(self.path))
        self.path.chmod(0o600)

    async def upstream(self, writer: asyncio.StreamWriter) -> Connection | None:
        try:
            return await asyncio.open_connection(self._host, self._port)
        except OSError as err:
            log.info("relay: orchestrator unreachable", extra={"fields": {"error": str(err)}})
            return None

    async def close(self) -> None:
        """Stop listening, cut every relayed connection, remove the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.cut()
        self.path.unlink(missing_ok=True)

