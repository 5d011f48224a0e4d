"""``AdminServer``: AdminService on its management listeners, never on the runners' address.

    async with AdminServer(servicer, OperatorTokens(store), config, data_dir) as admin:
        admin.socket_path     # <data_dir>/admin.sock (or admin.socket), mode 0600
        admin.tcp_address     # "HOST:PORT" of the TLS listener, "" without admin.listen

Two gRPC servers carry the one servicer, each with its own ``AdminAuth``:

    trusted   <data_dir>/.admin/trusted.sock   peers with a trusted uid: LOCAL_ADMIN, or their token
    token     <data_dir>/.admin/token.sock     other local peers: a token
              admin.listen (TLS, mTLS option)  remote operators: a token

The public socket is a ``PeerRelay`` that sends each connection to ``trusted``
or ``token`` by its peer's uid. ``<data_dir>/.admin`` is 0700, so nobody else
reaches the private sockets directly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection
from pathlib import Path
from typing import Literal

import grpc

from common.files import private_dir
from common.grpc_options import server_options
from common.rpc import admin_pb2_grpc
from orchestrator.admin.auth import AdminAuth
from orchestrator.admin.relay import AdminListenError, PeerRelay, check_socket_path, clear_stale
from orchestrator.admin.settings import AdminConfig
from orchestrator.operators import LOCAL_ADMIN, OperatorTokens

PRIVATE_DIR = ".admin"


def trusted_uids() -> frozenset[int]:
    """Who the socket treats as admin without a token: root and the user this process runs as."""
    return frozenset({0, os.geteuid()})


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise AdminListenError(f"cannot read {what} {path}: {err.strerror}") from err


def tls_credentials(config: AdminConfig) -> grpc.ServerCredentials:
    """The TCP listener's TLS: its certificate, and with ``tls_client_ca`` mutual TLS."""
    assert config.tls_cert is not None and config.tls_key is not None  # AdminConfig checks
    pair = (_read(config.tls_key, "admin.tls_key"), _read(config.tls_cert, "admin.tls_cert"))
    client_ca = _read(config.tls_client_ca, "admin.tls_client_ca") if config.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


class AdminServer:
    """AdminService on the socket (and ``admin.listen``); start once, stop once."""

    def __init__(self, servicer: admin_pb2_grpc.AdminServiceServicer, tokens: OperatorTokens, config: AdminConfig,
                 data_dir: Path, trusted: Collection[int] | None = None, grace_seconds: float = 5.0) -> None:
        self.servicer = servicer
        self.tokens = tokens
        self.config = config
        self.socket_path = config.socket_path(data_dir)
        self.private = data_dir.expanduser().absolute() / PRIVATE_DIR
        self.trusted = trusted_uids() if trusted is None else frozenset(trusted)
        self.grace_seconds = grace_seconds
        self.tcp_address = ""
        self._servers: list[grpc.aio.Server] = []
        self._bound: list[Path] = []  # private sockets this server made (and so removes)
        self._relay: PeerRelay | None = None
        self._state: Literal["new", "started", "stopped"] = "new"

    def _server(self, auth: AdminAuth) -> grpc.aio.Server:
        server = grpc.aio.server(interceptors=[auth], options=server_options())
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self.servicer, server)
        self._servers.append(server)
        return server

    def _bind_unix(self, server: grpc.aio.Server, path: Path) -> None:
        check_socket_path(path)
        clear_stale(path)
        try:
            bound = server.add_insecure_port(f"unix:{path}")
        except RuntimeError as err:
            raise AdminListenError(f"cannot listen on {path}: {err}") from err
        if not bound:
            raise AdminListenError(f"cannot listen on {path}")
        self._bound.append(path)

    def _bind_tcp(self, server: grpc.aio.Server) -> None:
        host, _, port = self.config.listen.rpartition(":")
        try:
            bound = server.add_secure_port(self.config.listen, tls_credentials(self.config))
        except RuntimeError as err:
            raise AdminListenError(f"cannot listen on {self.config.listen} (admin.listen): {err}") from err
        if not bound:
            raise AdminListenError(f"cannot listen on {self.config.listen} (admin.listen): in use or not allowed")
        self.tcp_address = f"{host}:{bound}"

    async def start(self) -> None:
        if self._state != "new":
            raise AdminListenError(f"the admin server was already {self._state}")
        self._state = "started"
        check_socket_path(self.socket_path)
        clear_stale(self.socket_path)  # first: a node already serving this data directory is refused here
        try:
            private_dir(self.private)
            trusted_sock, token_sock = self.private / "trusted.sock", self.private / "token.sock"
            trusted = self._server(AdminAuth(self.tokens, peer=LOCAL_ADMIN))
            self._bind_unix(trusted, trusted_sock)
            token = self._server(AdminAuth(self.tokens, peer=None))
            self._bind_unix(token, token_sock)
            if self.config.listen:
                self._bind_tcp(token)
            for server in self._servers:
                await server.start()
            self._relay = PeerRelay(self.socket_path, trusted_sock, token_sock, self.trusted)
            await self._relay.start()
        except BaseException:
            await self.stop(0)
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving; calls in flight get ``grace`` seconds (0 cuts them off). Idempotent."""
        self._state = "stopped"
        servers, self._servers = self._servers, []
        await asyncio.gather(*(server.stop(self.grace_seconds if grace is None else grace) for server in servers))
        if self._relay is not None:
            await self._relay.stop()
            self._relay = None
        bound, self._bound = self._bound, []
        for path in bound:
            path.unlink(missing_ok=True)

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
