"""LogPeerService: a node serves the logs it holds to nodes that show a token for that one attempt;
and the ``logs`` settings refuse what would not work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from common.config import Seconds, load_config
from common.errors import ConfigError
from common.grpc_options import client_options
from common.rpc import admin_pb2, peer_pb2, peer_pb2_grpc, runner_pb2
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.logstore.peers import PeerServer, PeerServicer, peer_issuer
from orchestrator.logstore.reader import LocalLogs
from orchestrator.logstore.settings import LogsConfig, write_key
from orchestrator.node.settings import NodeSettings
from orchestrator.singlenode.settings import ServeSettings
from tests.logs.pages import lines_of

KEY = b"k" * 32


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[peer_pb2_grpc.LogPeerServiceStub, TokenIssuer]]:
    async with LogStore(tmp_path / "logs") as logs:
        joblog = await logs.open("job-1", 2)
        batch = runner_pb2.LogBatch(first_sequence=1)
        batch.runs.add(step=0, stream=admin_pb2.LOG_STREAM_STDOUT, at=1.0, lines=3, data=b"a\nb\nc")
        await joblog.append(batch)
        await joblog.close()
        issuer = peer_issuer(KEY, 60)
        server = PeerServer(PeerServicer(LocalLogs(logs, keepalive=0.5), issuer), "127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(server.address, options=client_options()) as channel:
                yield peer_pb2_grpc.LogPeerServiceStub(channel), issuer
        finally:
            await server.stop(0)


async def _read(stub: peer_pb2_grpc.LogPeerServiceStub, token: str | None, job_id: str = "job-1",
                attempt: int = 2, start: int = 1) -> list[admin_pb2.LogPage]:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    request = peer_pb2.ReadLogRequest(job_id=job_id, attempt=attempt, from_sequence=start)
    return [page async for page in stub.ReadLog(request, metadata=metadata)]


async def test_a_token_for_the_attempt_reads_it_from_any_line(served) -> None:  # type: ignore[no-untyped-def]
    stub, issuer = served
    pages = await _read(stub, issuer.issue("job-1", 2), start=2)
    assert [(ln.sequence, ln.content) for ln in lines_of(pages)] == [(2, b"b"), (3, b"c")]
    assert pages[-1].end


@pytest.mark.parametrize("case", ["none", "other attempt", "runner token", "other key", "expired", "not held"])
async def test_everything_else_is_refused(served, case: str) -> None:  # type: ignore[no-untyped-def]
    stub, issuer = served
    token = {
        "none": None,
        "other attempt": issuer.issue("job-1", 1),
        "runner token": TokenIssuer(KEY, 60).issue("job-1", 2),  # same key, the runners' audience
        "other key": peer_issuer(b"x" * 32, 60).issue("job-1", 2),
        "expired": issuer.issue("job-1", 2, now=0.0),
        "not held": issuer.issue("job-9", 2),
    }[case]
    job_id = "job-9" if case == "not held" else "job-1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _read(stub, token, job_id=job_id)
    expected = {"other attempt": grpc.StatusCode.PERMISSION_DENIED, "not held": grpc.StatusCode.NOT_FOUND}
    assert err.value.code() == expected.get(case, grpc.StatusCode.UNAUTHENTICATED), err.value.details()
    assert "\n" not in (err.value.details() or "")


def test_logs_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="logs.archive must be one of database, s3, none"):
        LogsConfig(archive="ftp")
    with pytest.raises(ConfigError, match="logs.peer_listen needs logs.peer_key_file"):
        LogsConfig(peer_listen="0.0.0.0:50053")
    with pytest.raises(ConfigError, match="logs.s3.bucket"):
        LogsConfig(archive="s3")
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        LogsConfig(peer_listen="50053", peer_key_file=tmp_path / "k")
    key = tmp_path / "peer.key"
    write_key(key)
    assert len(LogsConfig(peer_key_file=key).peer_key() or b"") == 64
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        LogsConfig(peer_key_file=key).peer_key()
    loaded = load_config(NodeSettings, env={"SOLSTICE_LOGS_RETENTION": "30d", "SOLSTICE_LOGS_ARCHIVE": "none"}).logs
    assert (loaded.retention, loaded.archive) == (Seconds(30 * 86400), "none")
    assert load_config(NodeSettings, env={}).logs.archive_or("database") == "database"  # a cluster shares them
    single = load_config(ServeSettings, env={})
    assert single.node_settings().logs.archive == "none"  # the single node keeps its files
    wanted = load_config(ServeSettings, env={"SOLSTICE_LOGS_ARCHIVE": "database"})
    assert wanted.node_settings().logs.archive == "database"
