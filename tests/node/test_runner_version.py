"""A runner the orchestrator does not speak is turned away before its job starts, with the reason."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from common.bootstrap import RunnerBootstrap
from common.rpc import jobs_pb2, runner_pb2
from orchestrator.node import testing
from orchestrator.store import JobState
from runner.connection import Connection, Refused
from tests.node.harness import job, local_node, local_settings
from tests.protocol.harness import assigned, bearer, orchestrator, stub
from tests.waiting import async_wait_until


async def test_an_old_runner_ends_its_job_errored_before_it_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(testing, "VERSION", "0.0.7")  # the instant driver's runner is an old one
    async with local_node(local_settings(tmp_path)) as node:
        await node.publish(job("old", steps=("echo never",)))

        async def finished():
            record = await node.store.get_job("old")
            return record if record is not None and record.state.terminal else None
        record = await async_wait_until(finished, timeout=30, what="the job to end")
        steps = await node.store.steps("old", 1)
    assert record.state is JobState.ERRORED
    assert record.reason == ("runner 0.0 in an image that does not name itself is older than this "
                             "orchestrator's minimum 0.1: rebuild the image")
    # Turned away before it started: never running, no step ran.
    assert JobState.RUNNING not in node.events.job_states("old")
    assert steps == []


async def test_the_runner_names_its_image_and_hears_the_reason(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.write_text("debian-12@20261201-1a2b3c4d\n")
    async with orchestrator(tmp_path / "logs") as orch:
        session = orch.gateway.assign(assigned("job-v", []))
        conn = Connection(RunnerBootstrap(orch.server.address, session.token), offline_limit=10.0)
        try:
            with pytest.raises(Refused) as info:
                await conn.get_job("guest", "0.0.3", image_file=image)
        finally:
            await conn.close()
        outcome = await session.wait_finished()
        # The refusal is final: a second GetJob is refused the same way, nothing was handed out.
        channel, client = stub(orch.server.address)
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as again:
                await client.GetJob(runner_pb2.GetRunnerJobRequest(job=runner_pb2.JobRef(job_id="job-v", attempt=1),
                                                                    runner_version="0.0.3"),
                                    metadata=bearer(session.token))
    reason = "runner 0.0 in image debian-12@20261201-1a2b3c4d is older than this orchestrator's minimum 0.1"
    assert reason in str(info.value)
    assert outcome.state == jobs_pb2.JOB_STATE_ERRORED and outcome.reason.startswith(reason)
    assert session.refused is not None and session.refused.startswith(reason)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
