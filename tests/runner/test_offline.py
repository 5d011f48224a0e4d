"""The runner's offline window is the node's patience, handed out in GetJob.

The node ends a silent runner's attempt after ``timeouts.runner_silence``
(its gateway's ``runner_patience``); the runner gives up on the node a
margin before that, counted from the last call the node answered - so a
runner that reconnects within its window always finds its job, and none
works on for a job its node gave up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from common.bootstrap import RunnerBootstrap
from common.rpc import jobs_pb2
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.runnerapi import RunnerGateway
from runner import connection
from runner.connection import Connection
from tests.protocol.harness import KEY, assigned
from tests.runner.helpers import make_repo, runner_exit, serve_runners, start_runner
from tests.waiting import async_wait_until

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("patience", [2.0, 8.0, 60.0, 600.0])
def test_the_runner_gives_up_before_the_node_does(patience: float):
    gateway = RunnerGateway(LogStore(Path("/nonexistent")), TokenIssuer(KEY, 60), runner_patience=patience)
    assert 0 < gateway.runner_offline_limit < patience
    assert patience - gateway.runner_offline_limit <= 5.0


async def test_the_offline_clock_starts_at_the_last_answered_call(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(connection.time, "monotonic", lambda: now[0])
    token = TokenIssuer(KEY, 60).issue("job-1", 1)
    conn = Connection(RunnerBootstrap("127.0.0.1:1", token), offline_limit=10.0)
    try:
        conn.reached()
        now[0] += 4.0  # a heartbeat interval or an RPC later, the first call fails...
        conn.missed(grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()))
        now[0] += 6.5  # ...and the node has heard nothing for 10.5 s by now: so has the runner
        assert conn.gone
    finally:
        await conn.close()


async def test_an_outage_shorter_than_the_window_resumes_the_job(tmp_path: Path):
    repo = make_repo(tmp_path / "repo", {"x": "y"})
    go = tmp_path / "go"
    steps = [jobs_pb2.Step(name="Wait", run=f"echo before; while [ ! -e {go} ]; do sleep 0.05; done; echo after")]
    job = assigned("job-1", steps, clone_url=repo.url, sha=repo.sha)
    store, gateway, server = await serve_runners(tmp_path / "logs", patience=8.0)  # the runner's window: 6 s
    session = gateway.assign(job)
    proc = await start_runner(server.address, session.token, tmp_path / "vm")
    try:
        await async_wait_until(lambda: session.steps, timeout=60, what="the step to start")
        port = server.port
        await server.stop(grace=0)
        await store.aclose()
        go.touch()
        await asyncio.sleep(1.0)  # the outage itself (well inside the window), not a wait for a condition
        store, gateway, server = await serve_runners(tmp_path / "logs", patience=8.0, port=port)
        session = gateway.assign(job)
        outcome = await asyncio.wait_for(session.wait_finished(), 60)
    finally:
        await server.stop(grace=0)
        await store.aclose()
        code, stderr = await runner_exit(proc)
    assert code == 0, stderr
    assert outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED
