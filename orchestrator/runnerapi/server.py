"""The runners' gRPC server: RunnerService and nothing else.

Runners in VMs - and so the code of every job - can reach this address, so it
serves no other service: AdminService has listeners of its own
(``orchestrator.admin.listeners``), and there is no way to add one here.
"""

from __future__ import annotations

from typing import Literal

import grpc

from common.errors import SolsticeError
from common.grpc_options import server_options
from common.rpc import runner_pb2_grpc
from orchestrator.runnerapi.gateway import RunnerGateway
from orchestrator.runnerapi.servicer import RunnerServicer


class ServerError(SolsticeError):
    """The gRPC server could not start."""


class RunnerServer:
    """Serves RunnerService for ``gateway`` on ``host:port`` (port 0 picks one).

    Use as ``async with RunnerServer(...) as server: server.address``; a
    stopped server cannot be started again (make a new one on the same port).
    """

    def __init__(
        self,
        gateway: RunnerGateway,
        host: str = "127.0.0.1",
        port: int = 0,
        grace_seconds: float = 5.0,
    ) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        self.grace_seconds = grace_seconds
        self._server: grpc.aio.Server | None = None
        self._state: Literal["new", "started", "stopped"] = "new"

    @property
    def address(self) -> str:
        """``host:port`` actually bound (what a runner's bootstrap names)."""
        if self._state != "started":
            raise ServerError("the runner server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        if self._state != "new":
            raise ServerError(f"the runner server was already {self._state}")
        server = grpc.aio.server(options=server_options())
        runner_pb2_grpc.add_RunnerServiceServicer_to_server(RunnerServicer(self.gateway), server)
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = server.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as err:
            raise ServerError(f"cannot listen on {host}:{self.port}: {err}") from err
        if bound == 0:
            raise ServerError(f"cannot listen on {host}:{self.port} (in use or not allowed)")
        self.port = bound
        await server.start()
        self._server = server
        self._state = "started"

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving; calls in flight get ``grace`` seconds (0 cuts them off)."""
        if self._state != "started" or self._server is None:
            self._state = "stopped"
            return
        self._state = "stopped"
        await self._server.stop(self.grace_seconds if grace is None else grace)
        self._server = None

    async def __aenter__(self) -> RunnerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
