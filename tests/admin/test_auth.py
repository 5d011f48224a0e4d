"""Who may call what on AdminService: anonymous, each role, foreign and broken tokens, each listener."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from common.errors import ConfigError
from common.rpc import admin_pb2, admin_pb2_grpc, runner_pb2, runner_pb2_grpc
from orchestrator.admin.auth import METHOD_ROLES
from orchestrator.admin.settings import AdminConfig
from orchestrator.operators import OperatorTokens, Role
from tests.admin.conftest import CALLS, bearer, outcome, tls_node, tls_stub, tokens_by_role
from tests.admin.tls import Pki
from tests.node.harness import job
from tests.waiting import async_wait_until

REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
# The roles as issue 13 defines them, written out independently of METHOD_ROLES.
READ = {"Get", "List", "TailLogs", "Hosts", "ListArtifacts", "DownloadArtifact"}  # issue 25: artifacts are read
OPERATE = READ | {"Submit", "Cancel", "Retry", "ListSecrets", "SecretAudit"}  # issue 16: names, never values
ADMIN = OPERATE | {"Drain", "CollectGarbage", "CreateToken", "ListTokens", "RevokeToken", "SetSecret", "DeleteSecret"}
ALLOWED = {Role.READ: READ, Role.OPERATE: OPERATE, Role.ADMIN: ADMIN}


def test_every_method_has_a_role_and_a_test_call() -> None:
    methods = set(admin_pb2.DESCRIPTOR.services_by_name["AdminService"].methods_by_name)
    assert set(METHOD_ROLES) == methods  # a new RPC without a role is refused to everyone
    assert set(CALLS) == methods == ADMIN


async def test_anonymous_calls_over_tcp_are_unauthenticated(tmp_path: Path, pki: Pki) -> None:
    async with tls_node(tmp_path, pki) as node, tls_stub(node, pki) as stub:
        for method in CALLS:
            try:
                await CALLS[method](stub, ())
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED, method
                assert "needs an operator token" in (err.details() or ""), method
            else:
                raise AssertionError(f"{method} answered an anonymous caller")
        assert await node.store.list_jobs() == []  # and nothing was stored


async def test_each_role_against_each_method(tmp_path: Path, pki: Pki) -> None:
    async with tls_node(tmp_path, pki) as node, tls_stub(node, pki) as stub:
        tokens = await tokens_by_role(node)
        for role, token in tokens.items():
            for method in CALLS:
                code = await outcome(stub, method, token)
                if method in ALLOWED[role]:
                    assert code not in REFUSED, (role, method, code)
                else:
                    assert code == grpc.StatusCode.PERMISSION_DENIED, (role, method, code)
        # What an allowed call does is real: an operator's Submit stores a job, a reader sees it.
        await stub.Submit(admin_pb2.SubmitRequest(jobs=[job("j-op")]), metadata=bearer(tokens[Role.OPERATE]))
        seen = await stub.Get(admin_pb2.GetJobRequest(job_id="j-op"), metadata=bearer(tokens[Role.READ]))
        assert seen.submitted_by == "t-operate"
        try:
            await stub.Cancel(admin_pb2.CancelRequest(job_id="j-op"), metadata=bearer(tokens[Role.READ]))
        except grpc.aio.AioRpcError as err:
            assert err.details() == "Cancel needs the operate role; 't-read' has read"
        else:
            raise AssertionError("a reader cancelled a job")


async def test_broken_foreign_expired_and_revoked_tokens_are_unauthenticated(tmp_path: Path, pki: Pki) -> None:
    async with tls_node(tmp_path, pki) as node, tls_stub(node, pki) as stub:
        tokens = OperatorTokens(node.store)
        good, record = await tokens.create("alice", Role.ADMIN)
        prefix, token_id, secret = good.split("_", 2)
        other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
        runner_token = node.node.parts.gateway.issuer.issue("j-any", 1)  # a job token, validly signed
        short, _ = await tokens.create("brief", Role.ADMIN, expires_in=0.05)
        revoked, _ = await tokens.create("gone", Role.ADMIN)
        await tokens.revoke("gone")
        assert await outcome(stub, "Hosts", good) == grpc.StatusCode.OK
        for bad in ("", "nonsense", f"{prefix}_{token_id}_{other_secret}", f"{prefix}_{'0' * 12}_{secret}",
                    runner_token, revoked):
            assert await outcome(stub, "Hosts", bad) == grpc.StatusCode.UNAUTHENTICATED, bad

        async def expired() -> bool:
            return await outcome(stub, "Hosts", short) == grpc.StatusCode.UNAUTHENTICATED
        await async_wait_until(expired, timeout=10, what="the short token to expire")
        try:
            await stub.Hosts(admin_pb2.HostsRequest(), metadata=(("authorization", f"Basic {good}"),))
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer" in (err.details() or "")
        listed = {r.name: r for r in await tokens.list()}
        assert listed["gone"].revoked and not listed["alice"].revoked and listed["brief"].expired
        assert record.token_hash not in good  # the store keeps a hash, never the token


async def test_admin_service_is_not_on_the_runner_address(tmp_path: Path, pki: Pki) -> None:
    async with tls_node(tmp_path, pki) as node:
        admin_token = (await tokens_by_role(node))[Role.ADMIN]
        async with grpc.aio.insecure_channel(node.node.address) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            for method in CALLS:
                for token in (None, admin_token):
                    assert await outcome(stub, method, token) == grpc.StatusCode.UNIMPLEMENTED, method


async def test_an_operator_token_is_refused_by_runner_service(tmp_path: Path, pki: Pki) -> None:
    async with tls_node(tmp_path, pki) as node:
        admin_token = (await tokens_by_role(node))[Role.ADMIN]
        async with grpc.aio.insecure_channel(node.node.address) as channel:
            runner = runner_pb2_grpc.RunnerServiceStub(channel)
            for call in (lambda md: runner.GetJob(runner_pb2.GetRunnerJobRequest(), metadata=md),
                         lambda md: runner.Heartbeat(runner_pb2.HeartbeatRequest(), metadata=md)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call(bearer(admin_token))
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_mutual_tls_needs_a_client_certificate(tmp_path: Path, pki: Pki) -> None:
    async with tls_node(tmp_path, pki, tls_client_ca=pki.ca) as node:
        token = (await tokens_by_role(node))[Role.READ]
        async with tls_stub(node, pki, client=False) as stub:
            assert await outcome(stub, "Hosts", token) == grpc.StatusCode.UNAVAILABLE  # the handshake fails
        async with tls_stub(node, pki, client=True) as stub:
            assert await outcome(stub, "Hosts", token) == grpc.StatusCode.OK
            assert await outcome(stub, "Hosts", None) == grpc.StatusCode.UNAUTHENTICATED  # a certificate is not a token


def test_a_tcp_listener_needs_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must not cross a network in clear text"):
        AdminConfig(listen="0.0.0.0:50052")
    with pytest.raises(ConfigError, match="need admin.listen"):
        AdminConfig(tls_client_ca=tmp_path / "ca.crt")
