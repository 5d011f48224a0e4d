"""The local admin socket: private, tells callers apart by uid, replaces a stale socket, refuses a live one."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import pytest

from common.rpc import admin_pb2_grpc
from orchestrator.admin import admin_servicer_factory
from orchestrator.admin.listeners import AdminServer
from orchestrator.admin.peercred import peer_uid
from orchestrator.admin.relay import AdminListenError
from orchestrator.admin.settings import AdminConfig
from orchestrator.operators import OperatorTokens, Role
from tests.admin.conftest import outcome
from tests.node.harness import local_node, local_settings

NOBODY = 65534
OK, UNAUTH, DENIED = grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
# A caller as another user: one List over the socket, with the token in argv[2] if any; prints the status.
OTHER_USER = """
import os, sys, grpc
import grpc._channel  # insecure_channel imports it lazily: done as root, the venv may be out of that user's reach
from common.rpc import admin_pb2, admin_pb2_grpc
os.setgid({uid}); os.setuid({uid})  # the connection (and so the peer uid the node reads) is made after this
stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel("unix:" + sys.argv[1]))
md = [("authorization", "Bearer " + sys.argv[2])] if len(sys.argv) > 2 else []
try:
    stub.List(admin_pb2.ListJobsRequest(limit=1), metadata=md, timeout=20)
    print("OK")
except grpc.RpcError as err:
    print(err.code().name)
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_peer_uid_of_a_connected_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_uid(left) == os.geteuid()


async def test_the_socket_is_private_and_its_owner_is_admin_without_a_token(tmp_path: Path) -> None:
    data = tmp_path / "node-a"  # local_settings: <root>/<host>
    async with local_node(local_settings(tmp_path)) as node:
        admin = node.node.admin
        assert admin is not None and admin.socket_path == data / "admin.sock"
        assert mode(admin.socket_path) == 0o600 and mode(data / ".admin") == 0o700
        reader, _ = await OperatorTokens(node.store).create("reader", Role.READ)
        async with grpc.aio.insecure_channel(node.node.admin_socket) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            assert await outcome(stub, "Drain", None) == grpc.StatusCode.NOT_FOUND  # admin: allowed, no such host
            assert await outcome(stub, "ListTokens", None) == OK
            assert await outcome(stub, "Drain", reader) == DENIED  # a token given decides, also here
            assert await outcome(stub, "List", reader) == OK
            assert await outcome(stub, "List", "solstice_000000000000_" + "x" * 43) == UNAUTH
    assert not (data / "admin.sock").exists()  # removed on the way out


async def test_a_caller_whose_uid_is_not_trusted_needs_a_token(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path / "node")) as node:
        # A second listener on the node's servicer that trusts another uid than ours: we are "someone else".
        server = AdminServer(admin_servicer_factory(node.node), OperatorTokens(node.store),
                             AdminConfig(), tmp_path / "other", trusted={os.geteuid() + 1})
        async with server:
            operator, _ = await OperatorTokens(node.store).create("op", Role.OPERATE)
            async with grpc.aio.insecure_channel(f"unix:{server.socket_path}") as channel:
                stub = admin_pb2_grpc.AdminServiceStub(channel)
                assert await outcome(stub, "List", None) == UNAUTH
                assert await outcome(stub, "List", operator) == OK
                assert await outcome(stub, "Drain", operator) == DENIED


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
async def test_another_user_on_the_socket_is_told_apart_by_uid(tmp_path: Path) -> None:
    # The socket must be reachable by that user at all: a world-traversable place, mode opened after start.
    public = Path(tempfile.mkdtemp(prefix="solstice-sock-"))
    try:
        public.chmod(0o755)
        settings = local_settings(tmp_path, admin=AdminConfig(socket=public / "admin.sock"))
        async with local_node(settings) as node:
            (public / "admin.sock").chmod(0o666)
            operator, _ = await OperatorTokens(node.store).create("op", Role.OPERATE)
            root = Path(__file__).resolve().parents[2]

            async def as_nobody(*args: str) -> str:
                # In a thread: the node's relay answers on this test's event loop.
                done = await asyncio.to_thread(
                    subprocess.run, [sys.executable, "-c", OTHER_USER.format(uid=NOBODY), *args], cwd=root,
                    capture_output=True, text=True, timeout=60)
                assert done.returncode == 0, done.stderr
                return done.stdout.strip()

            assert await as_nobody(str(public / "admin.sock")) == "UNAUTHENTICATED"
            assert await as_nobody(str(public / "admin.sock"), operator) == "OK"
            # The private sockets behind it are out of that user's reach.
            assert await as_nobody(str(tmp_path / "node-a" / ".admin" / "trusted.sock")) == "UNAVAILABLE"
    finally:
        (public / "admin.sock").unlink(missing_ok=True)
        public.rmdir()


async def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    data = tmp_path / "node-a"
    data.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(data / "admin.sock"))  # bound, never listening: what a killed node leaves
    stale.close()
    async with local_node(local_settings(tmp_path)) as node:
        assert node.node.admin is not None
        second = AdminServer(admin_servicer_factory(node.node), OperatorTokens(node.store), AdminConfig(), data)
        with pytest.raises(AdminListenError, match="another process serves"):
            await second.start()
        async with grpc.aio.insecure_channel(node.node.admin_socket) as channel:  # the first still answers
            assert await outcome(admin_pb2_grpc.AdminServiceStub(channel), "Hosts", None) == OK
    (tmp_path / "not-a-socket").write_text("x")
    with pytest.raises(AdminListenError, match="is not a socket"):
        await AdminServer(None, None, AdminConfig(socket=tmp_path / "not-a-socket"), tmp_path).start()  # type: ignore[arg-type]
