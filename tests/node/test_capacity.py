"""Capacity: the VM total and per-label limits hold, the prefetch follows the free slots, and a
node consumes only the labels it serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.config import Seconds
from orchestrator.node import Node, NodeError
from orchestrator.node.testing import InstantDriver
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import driver_of, job, local_node, local_settings, node_settings
from tests.waiting import async_wait_until


async def test_total_capacity_bounds_vms_and_prefetch_equals_free_slots(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings(capacity=2)) as node:
        driver = driver_of(node)
        await cluster.publish(*(job(f"c{i}", steps=("sleep 1.5",)) for i in range(6)))
        await async_wait_until(lambda: driver.live == 2, what="two VMs up")
        # Two running, no slot free: the broker hands out nothing more (a delivery held
        # waiting for a slot would be unacknowledged, and missing from the ready count).
        assert await cluster.ready("lab-a") == 4
        assert node.scheduler is not None and node.scheduler.wanted_free_slots() == 0
        for i in range(6):
            assert (await cluster.finished(f"c{i}")).state is JobState.SUCCEEDED
        assert driver.max_live == 2
        assert await cluster.ready("lab-a") == 0
        await async_wait_until(lambda: node.scheduler.wanted_free_slots() == 2, what="slots back")


async def test_label_limit_holds_while_other_labels_use_the_rest(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, labels=("lab-a", "lab-b"), capacity=4, node__label_limits={"lab-b": 1})
    async with local_node(settings) as node:
        await node.publish(*(job(f"b{i}", label="lab-b", steps=("sleep 0.6",)) for i in range(3)))
        await node.publish(*(job(f"a{i}", label="lab-a", steps=("sleep 0.6",)) for i in range(3)))
        for jid in [f"b{i}" for i in range(3)] + [f"a{i}" for i in range(3)]:
            await async_wait_until(lambda jid=jid: _terminal(node.store, jid), what=f"{jid} done")
            assert (await node.store.get_job(jid)).state is JobState.SUCCEEDED  # type: ignore[union-attr]
        assert node.driver.max_by_label["lab-b"] == 1
        assert node.driver.max_by_label["lab-a"] == 3  # the lab-b limit did not cap lab-a
        assert node.driver.max_live <= 4


async def _terminal(store, job_id: str) -> bool:  # type: ignore[no-untyped-def]
    record = await store.get_job(job_id)
    return record is not None and record.terminal


async def test_node_consumes_only_the_labels_it_serves(cluster: Cluster) -> None:
    await cluster.declare("lab-b")  # another node's label: routable, but not ours
    async with cluster.node(cluster.settings(labels=("lab-a",))) as node:
        await cluster.publish(job("theirs", label="lab-b"), job("ours", label="lab-a"))
        assert (await cluster.finished("ours")).state is JobState.SUCCEEDED
        assert await cluster.ready("lab-b") == 1
        assert await cluster.store.get_job("theirs") is None  # never even looked at
        assert vm_names_for(driver_of(node), "theirs") == []
    host = {h.name: h for h in await cluster.store.list_hosts()}["node-a"]
    assert host.labels == ("lab-a",)


def vm_names_for(driver: InstantDriver, job_id: str) -> list[str]:
    from orchestrator.names import vm_name
    return [name for call, name in driver.events if name == vm_name(job_id, 1)]


async def test_node_refuses_labels_its_driver_cannot_run(tmp_path: Path) -> None:
    settings = node_settings("sqlite::memory:", "amqp://unused/", tmp_path, "", labels=("lab-a", "lab-z"))
    driver = InstantDriver(tmp_path / "vms", labels=("lab-a",))
    from orchestrator.node import NodeParts
    from tests.node.harness import LocalIntake
    parts = NodeParts(store=None, driver=driver, gateway=None, publisher=LocalIntake(tmp_path / "q.db"),  # type: ignore[arg-type]
                      events=None, consumer_factory=LocalIntake(tmp_path / "q.db").consumer)  # type: ignore[arg-type]
    with pytest.raises(NodeError, match="cannot run label.*lab-z"):
        Node(parts, settings)


async def test_a_slot_is_free_once_the_vm_is_gone_not_when_the_state_is_stored(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, capacity=1)
    async with local_node(settings) as node:
        store = node.store
        gate = asyncio.Event()
        storing = asyncio.Event()
        transition_announced = store.transition_announced

        async def slow_final(job_id, attempt, to_state, *args, **kwargs):  # type: ignore[no-untyped-def]
            if job_id == "first" and to_state.terminal:
                storing.set()
                await gate.wait()  # the final state of "first" is held up in the store
            return await transition_announced(job_id, attempt, to_state, *args, **kwargs)

        store.transition_announced = slow_final  # type: ignore[method-assign]
        await node.publish(job("first"), job("second"))
        try:
            await async_wait_until(storing.is_set, what="first storing its final state")
            # Its VM is gone, so the one slot already runs "second" while "first" is not finished yet.
            await async_wait_until(lambda: _terminal(store, "second"), timeout=10, what="second done meanwhile")
            assert (await store.get_job("first")).state is JobState.RUNNING  # type: ignore[union-attr]
        finally:
            gate.set()  # also when it failed: the node must be able to shut down
        await async_wait_until(lambda: _terminal(store, "first"), what="first done")
        assert (await store.get_job("first")).state is JobState.SUCCEEDED  # type: ignore[union-attr]
        assert node.driver.max_live == 1  # never two VMs at once


LIMITED = {"timers__shutdown_grace": Seconds(0.2), "node__label_limits": {"lab-b": 1}}


async def starve_attempt(store, publish) -> None:  # type: ignore[no-untyped-def]
    """A backlog of a label at its ``label_limit`` must not hold the prefetch: before, the
    deliveries of lab-b beyond ``capacity`` that waited for a lab-b slot used up the credit, so
    a lab-a job waited for a lab-b job to end although 3 of 4 slots were free."""
    backlog = [f"b{i}" for i in range(12)]
    await publish(*(job(job_id, label="lab-b", steps=("sleep 60",)) for job_id in backlog))

    async def one_b_running() -> bool:
        return any(r is not None and r.state is JobState.RUNNING for r in [await store.get_job(j) for j in backlog])
    await async_wait_until(one_b_running, what="a lab-b job running")
    await publish(job("a1", label="lab-a"))
    await async_wait_until(lambda: _terminal(store, "a1"), timeout=50, what="the lab-a job done")
    assert (await store.get_job("a1")).state is JobState.SUCCEEDED
    # ...while every lab-b job is still running or waiting: it did not wait for one to end.
    assert [job_id for job_id in backlog if await _terminal(store, job_id)] == []


async def test_a_label_at_its_limit_leaves_the_free_slots_to_the_others(cluster: Cluster) -> None:
    await cluster.declare("lab-b")
    async with cluster.node(cluster.settings(labels=("lab-a", "lab-b"), **LIMITED)):
        await starve_attempt(cluster.store, cluster.publish)


async def test_a_label_at_its_limit_leaves_the_free_slots_to_the_others_locally(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path, labels=("lab-a", "lab-b"), **LIMITED)) as node:
        await starve_attempt(node.store, node.publish)
