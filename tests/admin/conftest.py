"""Fixtures of the admin tests: a single node (SQLite, instant driver) with a TLS admin listener."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.rpc import admin_pb2, admin_pb2_grpc
from orchestrator.admin.settings import AdminConfig
from orchestrator.operators import OperatorTokens, Role
from tests.admin.tls import Pki, make_pki
from tests.node.harness import LocalNode, local_node, local_settings

# One harmless request per AdminService method: a caller who may call it gets an
# answer or NOT_FOUND / INVALID_ARGUMENT, never a change to the node.
Call = Callable[[admin_pb2_grpc.AdminServiceStub, Any], Awaitable[Any]]


async def _tail(stub: admin_pb2_grpc.AdminServiceStub, metadata: Any) -> list[admin_pb2.LogPage]:
    return [page async for page in stub.TailLogs(admin_pb2.TailLogsRequest(job_id="job-nope"), metadata=metadata)]


async def _download(stub: admin_pb2_grpc.AdminServiceStub, md: Any) -> None:
    async for _ in stub.DownloadArtifact(admin_pb2.DownloadArtifactRequest(job_id="job-nope", name="a"), metadata=md):
        pass


CALLS: dict[str, Call] = {
    "Get": lambda s, md: s.Get(admin_pb2.GetJobRequest(job_id="job-nope"), metadata=md),
    "List": lambda s, md: s.List(admin_pb2.ListJobsRequest(limit=1), metadata=md),
    "TailLogs": _tail,
    "Hosts": lambda s, md: s.Hosts(admin_pb2.HostsRequest(), metadata=md),
    "Submit": lambda s, md: s.Submit(admin_pb2.SubmitRequest(), metadata=md),
    "Cancel": lambda s, md: s.Cancel(admin_pb2.CancelRequest(job_id="job-nope"), metadata=md),
    "Retry": lambda s, md: s.Retry(admin_pb2.RetryRequest(job_id="job-nope"), metadata=md),
    "Drain": lambda s, md: s.Drain(admin_pb2.DrainRequest(host="no-such-host"), metadata=md),
    "CollectGarbage": lambda s, md: s.CollectGarbage(admin_pb2.GarbageRequest(dry_run=True), metadata=md),
    "CreateToken": lambda s, md: s.CreateToken(admin_pb2.CreateTokenRequest(name=""), metadata=md),
    "ListTokens": lambda s, md: s.ListTokens(admin_pb2.ListTokensRequest(), metadata=md),
    "RevokeToken": lambda s, md: s.RevokeToken(admin_pb2.RevokeTokenRequest(name="nobody"), metadata=md),
    "SetSecret": lambda s, md: s.SetSecret(admin_pb2.SetSecretRequest(scope="github/acme/w", name="X"), metadata=md),
    "ListSecrets": lambda s, md: s.ListSecrets(admin_pb2.ListSecretsRequest(scope="github/acme/w"), metadata=md),
    "DeleteSecret": lambda s, md: s.DeleteSecret(admin_pb2.DeleteSecretRequest(scope="github/acme/w", name="X"),
                                                 metadata=md),
    "SecretAudit": lambda s, md: s.SecretAudit(admin_pb2.SecretAuditRequest(limit=1), metadata=md),
    "ListArtifacts": lambda s, md: s.ListArtifacts(admin_pb2.ListArtifactsRequest(job_id="job-nope"), metadata=md),
    "DownloadArtifact": _download,
}


async def outcome(stub: admin_pb2_grpc.AdminServiceStub, method: str, token: str | None) -> grpc.StatusCode:
    """The status one call of ``method`` ends with (OK when it answered)."""
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    try:
        await CALLS[method](stub, metadata)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.asynccontextmanager
async def tls_node(root: Path, pki: Pki, **admin: Any) -> AsyncIterator[LocalNode]:
    """A single node whose AdminService also listens on 127.0.0.1 (TLS) besides its socket."""
    config = AdminConfig(listen="127.0.0.1:0", tls_cert=pki.server_cert, tls_key=pki.server_key, **admin)
    async with local_node(local_settings(root, admin=config)) as node:
        yield node


@contextlib.asynccontextmanager
async def tls_stub(node: LocalNode, pki: Pki, client: bool = False) -> AsyncIterator[admin_pb2_grpc.AdminServiceStub]:
    """AdminService over the node's TLS listener (with the client certificate when ``client``)."""
    assert node.node.admin is not None
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes() if client else None,
        certificate_chain=pki.client_cert.read_bytes() if client else None)
    async with grpc.aio.secure_channel(node.node.admin.tcp_address, creds) as channel:
        yield admin_pb2_grpc.AdminServiceStub(channel)


async def tokens_by_role(node: LocalNode) -> dict[Role, str]:
    tokens = OperatorTokens(node.store)
    return {role: (await tokens.create(f"t-{role.label}", role))[0] for role in Role}
