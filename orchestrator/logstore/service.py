"""``NodeLogs``: what a node does with job logs besides writing them.

    async with open_node_logs(config, store, logstore, host) as logs:   # the archive opened
        await logs.start()        # recover, peer listener, shipping and retention tasks
        logs.reader               # LogReader: any attempt's log (TailLogs, the HTTP log)
        logs.finished(job_id, attempt)   # an attempt ended: its log goes to the archive
        await logs.stop()         # ship what is queued (bounded), stop the tasks and listener

With ``logs.archive: none`` (the single node) there is no archive, no
shipping and no peer listener: logs are read from this node's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from orchestrator.logstore.archive import LogArchive
from orchestrator.logstore.archiver import Archiver
from orchestrator.logstore.peers import PeerClient, PeerDirectory, PeerServer, PeerServicer, peer_issuer
from orchestrator.logstore.reader import LocalLogs, LogReader
from orchestrator.logstore.retention import Retention
from orchestrator.logstore.settings import LogsConfig
from orchestrator.logstore.sqlarchive import SqlLogArchive
from orchestrator.logstore.store import LogStore
from orchestrator.store import Store

log = logging.getLogger(__name__)
DRAIN_GRACE = 30.0  # at shutdown, finished attempts' logs get this long to reach the archive


class NodeLogs:
    """See the module docstring. Lifetime: ``start`` once, ``stop`` once."""

    def __init__(self, config: LogsConfig, store: Store, logstore: LogStore, host: str,
                 archive: LogArchive | None) -> None:
        self.config = config
        self.store = store
        self.logstore = logstore
        self.host = host
        self.archive = archive
        key = config.peer_key()
        self.issuer = peer_issuer(key, config.peer_token_ttl) if key else None
        backend = getattr(store, "backend", None)
        self.directory = PeerDirectory(backend) if backend is not None and archive is not None else None
        self.peers = PeerClient(self.directory, self.issuer, config.keepalive) \
            if self.directory is not None and self.issuer is not None else None
        self.reader = LogReader(store, logstore, host, archive, self.peers, keepalive=config.keepalive)
        self.archiver = Archiver(logstore, archive, host, config.archive_interval) if archive is not None else None
        self.retention = Retention(store, logstore, archive, config.retention)
        self.peer_server: PeerServer | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def finished(self, job_id: str, attempt: int) -> None:
        """The attempt ended on this node: queue its log for the archive (never waits)."""
        if self.archiver is not None:
            self.archiver.finished(job_id, attempt)

    @property
    def tasks(self) -> dict[str, asyncio.Task[None]]:
        """The long-lived tasks, by name (the node watches them)."""
        return dict(self._tasks)

    async def start(self) -> None:
        if self.archiver is not None:
            completed = await self.archiver.recover()
            if completed:
                log.info("archived %d logs an earlier run of this node left unfinished", completed)
            self._tasks["log archiver"] = asyncio.create_task(self.archiver.run(), name="log archiver")
        if self.config.peer_listen and self.issuer is not None and self.directory is not None:
            self.peer_server = PeerServer(PeerServicer(LocalLogs(self.logstore, self.config.keepalive), self.issuer),
                                          self.config.peer_listen)
            await self.peer_server.start()
            await self.directory.register(self.host, self.config.peer_advertise or self.peer_server.address)
        self._tasks["retention"] = asyncio.create_task(self.retention.run(self.config.gc_interval),
                                                       name="retention")

    async def stop(self, grace: float = DRAIN_GRACE) -> None:
        if self.archiver is not None and not await self.archiver.drain(grace):
            log.error("some finished attempts' logs were not archived before shutdown; the next start ships them")
        tasks, self._tasks = self._tasks, {}
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        if self.peer_server is not None:
            await self.peer_server.stop()
            self.peer_server = None
        if self.peers is not None:
            await self.peers.close()


@contextlib.asynccontextmanager
async def open_node_logs(config: LogsConfig, store: Store, logstore: LogStore, host: str) -> AsyncIterator[NodeLogs]:
    """``NodeLogs`` with its archive opened (and closed on the way out)."""
    archive: LogArchive | None = None
    kind = config.archive_or("database")  # a cluster node's default (the single node says "none")
    if kind == "database":
        archive = SqlLogArchive(store.backend)  # type: ignore[attr-defined]
    elif kind == "s3":
        from orchestrator.logstore.s3 import S3Objects

        objects = await S3Objects.open(config.s3)
        archive = SqlLogArchive(store.backend, objects)  # type: ignore[attr-defined]
    try:
        yield NodeLogs(config, store, logstore, host, archive)
    finally:
        if archive is not None:
            await archive.close()
