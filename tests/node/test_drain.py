"""Drain: a node stops taking work, finishes what it runs, then idles (or exits); undrain resumes."""

from __future__ import annotations

import asyncio

from common.rpc import admin_pb2
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, driver_of, job
from tests.waiting import async_wait_until


async def test_drain_finishes_running_work_takes_none_then_undrain_resumes(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        await cluster.publish(job("first", steps=("sleep 1",)))

        async def first_running() -> bool:
            record = await cluster.store.get_job("first")
            return record is not None and record.state is JobState.RUNNING
        await async_wait_until(first_running, what="first running")

        host = await admin.Drain(admin_pb2.DrainRequest(host="node-a"))
        assert host.draining
        await cluster.publish(job("second"))
        assert (await cluster.finished("first")).state is JobState.SUCCEEDED  # running work finishes
        # ...and nothing new is taken: the request waits in the broker, untouched.
        await async_wait_until(lambda: node.scheduler is not None and node.scheduler.idle, what="node idle")
        assert await cluster.ready("lab-a") == 1
        assert await cluster.store.get_job("second") is None
        hosts = (await admin.Hosts(admin_pb2.HostsRequest())).hosts
        assert [(h.name, h.draining, h.alive) for h in hosts] == [("node-a", True, True)]
        assert node.draining

        # the drain flag lives in the store: a heartbeat keeps re-applying it, no flapping
        beats = await cluster.store.list_hosts()
        assert beats[0].draining

        undrained = await admin.Drain(admin_pb2.DrainRequest(host="node-a", undrain=True))
        assert not undrained.draining
        assert (await cluster.finished("second")).state is JobState.SUCCEEDED
        assert driver_of(node).max_live == 1


async def test_drain_from_another_node_reaches_this_one_through_the_store(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as a, \
            cluster.node(cluster.settings(host="node-b", labels=("lab-b",))) as b, admin_stub(b) as admin_b:
        await admin_b.Drain(admin_pb2.DrainRequest(host="node-a"))
        await async_wait_until(lambda: a.draining, what="node-a sees its drain flag on a heartbeat")
        await cluster.publish(job("waits"))
        assert await cluster.ready("lab-a") == 1  # node-a consumes nothing while drained
        assert not b.draining
        await admin_b.Drain(admin_pb2.DrainRequest(host="node-a", undrain=True))
        assert (await cluster.finished("waits")).state is JobState.SUCCEEDED
        assert driver_of(a).destroyed  # it ran on node-a once undrained


async def test_drained_node_exits_when_configured(cluster: Cluster) -> None:
    settings = cluster.settings(node__exit_when_drained=True)
    async with cluster.node(settings) as node, admin_stub(node) as admin:
        await cluster.publish(job("last", steps=("sleep 0.5",)))

        async def running() -> bool:
            record = await cluster.store.get_job("last")
            return record is not None and record.state is JobState.RUNNING
        await async_wait_until(running, what="last running")
        waiter = asyncio.ensure_future(node.wait())
        await admin.Drain(admin_pb2.DrainRequest())  # no host: this node
        await asyncio.wait_for(waiter, 30)  # returns (no NodeError) once the job is done
        record = await cluster.store.get_job("last")
        assert record is not None and record.state is JobState.SUCCEEDED
