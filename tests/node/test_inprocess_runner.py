"""The ``instant-inprocess`` driver: its fake runner calls the node's RunnerService servicer directly.

The node advertises an address nothing listens on, so a job can only finish
if no gRPC is involved; everything the servicer does (token check, steps,
log lines, heartbeats that carry a cancel, Complete) must still happen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.bootstrap import RunnerBootstrap
from common.rpc import admin_pb2, jobs_pb2
from common.tokens import TokenIssuer
from common.version import VERSION
from orchestrator.catalog import DriverConfig, LocalConfig
from orchestrator.logstore import LogStore
from orchestrator.node.settings import GrpcConfig
from orchestrator.node.testing import DirectConnection
from orchestrator.runnerapi import AssignedJob, RunnerGateway
from orchestrator.runnerapi.servicer import RunnerServicer
from orchestrator.store import JobState, StepState
from runner.connection import Refused
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, driver_of, job
from tests.waiting import async_wait_until

NOWHERE = "127.0.0.1:9"  # the discard port: no RunnerService answers there


def inprocess_settings(cluster: Cluster, root: Path):  # type: ignore[no-untyped-def]
    return cluster.settings(
        drivers=DriverConfig(driver="instant-inprocess", local=LocalConfig(state_dir=root / "vms")),
        grpc=GrpcConfig(listen="127.0.0.1:0", advertise=NOWHERE),
    )


async def test_jobs_run_through_the_servicer_without_grpc(cluster: Cluster, tmp_path: Path) -> None:
    async with cluster.node(inprocess_settings(cluster, tmp_path)) as node, admin_stub(node) as admin:
        driver = driver_of(node)
        assert driver.in_process
        await cluster.publish(job("ok", steps=("echo hello", "true")), job("bad", steps=("exit 4", "true")),
                              job("slow", steps=("sleep 30",)))
        ok, bad = await cluster.finished("ok"), await cluster.finished("bad")
        assert ok.state is JobState.SUCCEEDED and ok.host == node.host
        assert [(s.index, s.state) for s in await cluster.store.steps("ok", 1)] == [
            (0, StepState.SUCCEEDED), (1, StepState.SUCCEEDED)]
        lines = await (await node.parts.gateway.logstore.open("ok", 1, create=False)).read_all()
        assert [line.content for line in lines] == [b"hello"]
        assert bad.state is JobState.FAILED and "exited with 4" in bad.reason
        assert [(s.index, s.exit_code) for s in await cluster.store.steps("bad", 1)] == [(0, 4)]

        async def running() -> bool:
            record = await cluster.store.get_job("slow")
            return record is not None and record.state is JobState.RUNNING
        await async_wait_until(running, what="slow running")
        await admin.Cancel(admin_pb2.CancelRequest(job_id="slow", reason="enough"))
        slow = await cluster.finished("slow")
        # The cancel is announced when it is applied; the attempt then winds down and records its steps.
        await async_wait_until(lambda: node.scheduler is not None and node.scheduler.idle, what="slow wound down")
        # the runner heard the cancel on a heartbeat and reported its step as ended by it
        assert (slow.state, slow.reason) == (JobState.CANCELLED, "enough")
        assert [s.exit_code for s in await cluster.store.steps("slow", 1)] == [143]
        for job_id in ("ok", "bad", "slow"):
            assert cluster.events.job_states(job_id)[-1] is JobState((await cluster.store.get_job(job_id)).state)


async def test_the_direct_connection_is_refused_like_a_grpc_one(tmp_path: Path) -> None:
    issuer = TokenIssuer(os.urandom(32), 3600.0)
    async with LogStore(tmp_path / "logs") as logstore:
        gateway = RunnerGateway(logstore, issuer)
        servicer = RunnerServicer(gateway)
        session = gateway.assign(AssignedJob("j1", 1, jobs_pb2.JobRequest(job_id="j1")))

        good = DirectConnection(servicer, RunnerBootstrap("unused:1", session.token), "j1", 1)
        assert (await good.get_job("h", VERSION)).job.job_id == "j1"
        assert session.connected.is_set()

        forged = TokenIssuer(os.urandom(32), 3600.0).issue("j1", 1)
        with pytest.raises(Refused, match="not valid"):
            await DirectConnection(servicer, RunnerBootstrap("unused:1", forged), "j1", 1).get_job("h", VERSION)
        unassigned = issuer.issue("j1", 2)
        with pytest.raises(Refused, match="not assigned here"):
            await DirectConnection(servicer, RunnerBootstrap("unused:1", unassigned), "j1", 2).get_job("h", VERSION)
        await gateway.release("j1", 1)
