"""Nodes reading each other's logs: ``LogPeerService`` (proto/solstice/v1/peer.proto).

A node with ``logs.peer_listen`` serves the logs it holds (``PeerServer``) and
lists its address in the store (``PeerDirectory``: table ``log_peers``); a
node reading a log that another node holds asks that node (``PeerClient``).
Every call carries a token signed with the cluster's peer key
(``logs.peer_key_file``, the same on every node), of audience
``solstice-log-peer``, expiring within ``logs.peer_token_ttl`` and bound to
the one job attempt it reads: the listener serves nothing else, and a runner
token (another audience) or a token of another attempt is refused.

A peer that does not answer, or whose stream breaks or stalls (no page, not
even a keepalive, for three keepalive periods), is ``PeerUnavailable``: the
reader falls back to the archive and resumes from the last sequence it had.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import grpc

from common.grpc_options import client_options, server_options
from common.rpc import admin_pb2, peer_pb2, peer_pb2_grpc
from common.tokens import TokenError, TokenIssuer
from orchestrator.logstore.errors import LogNotFound, LogStoreError
from orchestrator.logstore.reader import LocalLogs, PeerUnavailable
from orchestrator.store.backend import Backend
from orchestrator.store.errors import StoreError

log = logging.getLogger(__name__)
AUDIENCE = "solstice-log-peer"


def peer_issuer(key: bytes, ttl: float) -> TokenIssuer:
    return TokenIssuer(key, ttl, audience=AUDIENCE)


class PeerDirectory:
    """Which address each node's peer listener has (``log_peers`` in the state store's database)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def register(self, host: str, address: str) -> None:
        await self.backend.run(
            "INSERT INTO log_peers (host, address, updated_at) VALUES ($1, $2, {now})"
            " ON CONFLICT (host) DO UPDATE SET address = excluded.address, updated_at = excluded.updated_at",
            host, address)

    async def forget(self, host: str) -> None:
        await self.backend.run("DELETE FROM log_peers WHERE host = $1", host)

    async def address(self, host: str) -> str | None:
        rows = await self.backend.run("SELECT address FROM log_peers WHERE host = $1", host)
        return rows[0]["address"] if rows else None


class PeerServicer(peer_pb2_grpc.LogPeerServiceServicer):
    """Serves this node's own logs to the other nodes."""

    def __init__(self, local: LocalLogs, issuer: TokenIssuer) -> None:
        self.local = local
        self.issuer = issuer

    async def ReadLog(self, request, context):
        auth = dict(context.invocation_metadata() or ()).get("authorization", "")
        scheme, _, token = auth.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise TokenError("missing 'authorization: Bearer <token>'")
            claims = self.issuer.verify(token.strip())
        except TokenError as err:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err).replace("job token", "peer token"))
            return
        if (claims.job_id, claims.attempt) != (request.job_id, request.attempt):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token is for another job attempt")
            return
        try:
            async for page in self.local.pages(request.job_id, request.attempt, max(1, request.from_sequence),
                                               request.follow):
                yield page
        except LogNotFound as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except LogStoreError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))


class PeerServer:
    """``LogPeerService`` on ``listen``; ``address`` is what it bound (port 0 picks one)."""

    def __init__(self, servicer: PeerServicer, listen: str) -> None:
        self.servicer = servicer
        self.listen = listen
        self.address = ""
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server(options=server_options())
        peer_pb2_grpc.add_LogPeerServiceServicer_to_server(self.servicer, server)
        host = self.listen.rpartition(":")[0]
        try:
            port = server.add_insecure_port(self.listen)
        except RuntimeError as err:
            raise LogStoreError(f"cannot listen on {self.listen} (logs.peer_listen): {err}") from err
        if not port:
            raise LogStoreError(f"cannot listen on {self.listen} (logs.peer_listen): in use or not allowed")
        await server.start()
        self._server = server
        self.address = f"{host}:{port}"

    async def stop(self, grace: float = 2.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)


class PeerClient:
    """Reads logs other nodes hold; one channel per peer address, kept open."""

    def __init__(self, directory: PeerDirectory, issuer: TokenIssuer, keepalive: float,
                 connect_timeout: float = 5.0) -> None:
        self.directory = directory
        self.issuer = issuer
        self.stall = 3 * keepalive
        self.connect_timeout = connect_timeout
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> peer_pb2_grpc.LogPeerServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address, options=client_options())
        return peer_pb2_grpc.LogPeerServiceStub(channel)

    async def pages(self, host: str, job_id: str, attempt: int, from_sequence: int,
                    follow: bool) -> AsyncGenerator[admin_pb2.LogPage, None]:
        """The pages ``host`` holds of the attempt's log (see ``LocalLogs.pages``)."""
        try:
            address = await self.directory.address(host)
        except StoreError as err:
            raise PeerUnavailable(f"cannot look up node {host}: {err}") from err
        if not address:
            raise PeerUnavailable(f"node {host} serves no peer reads (no logs.peer_listen)")
        request = peer_pb2.ReadLogRequest(job_id=job_id, attempt=attempt, from_sequence=from_sequence, follow=follow)
        metadata = (("authorization", f"Bearer {self.issuer.issue(job_id, attempt)}"),)
        call = self._stub(address).ReadLog(request, metadata=metadata, wait_for_ready=False)
        try:
            first = True
            while True:
                try:
                    page = await asyncio.wait_for(call.read(), self.connect_timeout if first else self.stall)
                except TimeoutError:
                    raise PeerUnavailable(f"node {host} at {address} stopped answering") from None
                first = False
                if page is grpc.aio.EOF:
                    return
                yield page
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise LogNotFound(err.details() or f"node {host} holds no log of job {job_id}") from None
            if err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                log.error("node %s refused a peer read: %s (is logs.peer_key_file the same on every node?)",
                          host, err.details())
            raise PeerUnavailable(f"node {host} at {address}: {err.details() or err.code().name}") from None
        finally:
            call.cancel()

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()
