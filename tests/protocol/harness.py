"""A real orchestrator side for tests: log store, gateway and gRPC server on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from common.grpc_options import client_options
from common.rpc import jobs_pb2, runner_pb2_grpc
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.runnerapi import AssignedJob, RunnerGateway, RunnerServer

KEY = b"test-signing-key-of-32-bytes-or-more!"


@dataclass
class Orchestrator:
    store: LogStore
    issuer: TokenIssuer
    gateway: RunnerGateway
    server: RunnerServer


@contextlib.asynccontextmanager
async def orchestrator(logdir: Path, port: int = 0, heartbeat_interval: float = 0.2,
                       ttl: float = 600.0) -> AsyncIterator[Orchestrator]:
    store = LogStore(logdir)
    issuer = TokenIssuer(KEY, ttl_seconds=ttl)
    gateway = RunnerGateway(store, issuer, heartbeat_interval=heartbeat_interval)
    server = RunnerServer(gateway, port=port, grace_seconds=0.5)
    try:
        async with server:
            yield Orchestrator(store, issuer, gateway, server)
    finally:
        await store.aclose()


def job_request(job_id: str, steps: list[jobs_pb2.Step], clone_url: str = "", sha: str = "",
                env: dict[str, str] | None = None, trusted: bool = True,
                secrets: list[str] = ()) -> jobs_pb2.JobRequest:
    req = jobs_pb2.JobRequest(schema_version=1, job_id=job_id, key="build", runs_on="local", trusted=trusted)
    req.checkout.clone_url = clone_url
    req.checkout.sha = sha
    req.checkout.ref = "refs/heads/main"
    req.steps.extend(steps)
    req.env.update(env or {})
    req.secrets.extend(secrets)
    return req


def assigned(job_id: str, steps: list[jobs_pb2.Step], attempt: int = 1, secrets: dict[str, str] | None = None,
             timeout: float = 120.0, grace: float = 1.0, **kw) -> AssignedJob:
    secrets = secrets or {}
    return AssignedJob(job_id, attempt, job_request(job_id, steps, secrets=list(secrets), **kw),
                       secrets, timeout_seconds=timeout, kill_grace_seconds=grace)


def stub(address: str) -> tuple[grpc.aio.Channel, runner_pb2_grpc.RunnerServiceStub]:
    channel = grpc.aio.insecure_channel(address, options=client_options())
    return channel, runner_pb2_grpc.RunnerServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
