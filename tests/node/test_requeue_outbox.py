"""A stored ``queued`` attempt always reaches the queue: requeues and retries publish through the
durable outbox, written in the same transaction as the new attempt.

Before, the new attempt was committed and then published; a publish that failed (a broker outage
longer than ``publish_timeout``) left the job ``queued`` forever, since nothing publishes a stored
queued attempt again - on the lapsed-host sweep, at a node's start-up, and in AdminService Retry.
Here the node's job publisher refuses its first publishes, as a broker outage would.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from common.queue.errors import PublishFailed
from common.rpc import admin_pb2, jobs_pb2
from orchestrator.names import vm_name
from orchestrator.node import Node, NodeSettings
from orchestrator.node.serve import open_parts
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, job, local_node, local_settings
from tests.node.test_heartbeat import attempt_done, ghost_holds
from tests.waiting import async_wait_until

E, S, Q = JobState.ERRORED, JobState.SUCCEEDED, JobState.QUEUED


class RefusingFirst:
    """A ``JobPublisher`` whose first ``refuse`` publishes fail as in a broker outage."""

    def __init__(self, inner, refuse: int) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.refuse = refuse
        self.refused = 0

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], **options: object) -> None:
        if self.refused < self.refuse:
            self.refused += 1
            raise PublishFailed("RabbitMQ at mq:5672 did not confirm message x within 60s: ConnectionRefusedError")
        await self.inner.publish(requests, **options)


@contextlib.asynccontextmanager
async def node_refusing(settings: NodeSettings, refuse: int) -> AsyncIterator[tuple[Node, RefusingFirst]]:
    async with open_parts(settings) as parts:
        publisher = RefusingFirst(parts.publisher, refuse)
        async with Node(dataclasses.replace(parts, publisher=publisher), settings) as node:
            yield node, publisher


async def test_a_lapsed_hosts_job_is_requeued_although_the_publish_fails(cluster: Cluster) -> None:
    await ghost_holds(cluster, "orphan", attempts=1)
    async with node_refusing(cluster.settings(), refuse=2) as (_node, publisher):
        await attempt_done(cluster, "orphan", 2)
        attempts = await cluster.store.attempts("orphan")
        assert [(a.attempt, a.state, a.host) for a in attempts] == [(1, E, "ghost"), (2, S, "node-a")]
        assert publisher.refused == 2
        await cluster.events.settled("orphan", [Q, JobState.PROVISIONING, JobState.RUNNING, S])


async def test_a_restarted_nodes_jobs_are_requeued_although_the_publish_fails(cluster: Cluster) -> None:
    """The attempts this host's previous process held: taken back at start-up (before, a failed
    publish there also failed the node's start)."""
    store = cluster.store
    await store.register_host("node-a", ["lab-a"], 4)
    await store.submit(job("held"))
    assert await store.claim("held", 1, "node-a", vm_name("held", 1))
    async with node_refusing(cluster.settings(), refuse=1) as (_node, publisher):
        await attempt_done(cluster, "held", 2)
        assert (await store.get_job("held")).state is S  # type: ignore[union-attr]
        assert publisher.refused == 1


async def test_a_retry_reaches_the_queue_although_the_publish_fails(cluster: Cluster) -> None:
    async with node_refusing(cluster.settings(), refuse=0) as (node, publisher):
        await cluster.publish(job("flaky", steps=("exit 1",)))
        assert (await cluster.finished("flaky")).state is JobState.FAILED
        publisher.refuse = 1
        async with admin_stub(node) as admin:
            info = await admin.Retry(admin_pb2.RetryRequest(job_id="flaky"))
        assert info.attempt == 2 and info.state == jobs_pb2.JOB_STATE_QUEUED
        await attempt_done(cluster, "flaky", 2)
        assert publisher.refused == 1


async def test_a_requeued_attempt_goes_ahead_of_new_work(tmp_path: Path) -> None:
    """Issue 20: a job requeued from a lost host does not wait behind the whole queue."""
    async with local_node(local_settings(tmp_path, capacity=1)) as node:
        store = node.store
        await node.publish(job("blocker", steps=("sleep 6",)))
        await async_wait_until(lambda: _state_is(store, "blocker", JobState.RUNNING), what="blocker running")
        await node.publish(*(job(f"new-{n}") for n in range(3)))  # queued behind it
        await store.register_host("ghost", ["lab-a"], 1)
        await store.submit(job("orphan"))
        assert await store.claim("orphan", 1, "ghost", vm_name("orphan", 1))
        # The ghost stops heartbeating; once it lapsed, the node's sweep requeues "orphan" as attempt 2.
        await async_wait_until(lambda: _attempt_is(store, "orphan", 2), what="orphan requeued")
        assert await node.node.outbox.flush(10)  # its request is in the queue, behind the 3 new ones
        assert await _state_is(store, "blocker", JobState.RUNNING), "too late: the blocker ended first"
        for job_id in ("blocker", "orphan", "new-0", "new-1", "new-2"):
            await async_wait_until(lambda j=job_id: _terminal(store, j), what=f"{job_id} done")
        started = {}
        for job_id in ("orphan", "new-0", "new-1", "new-2"):
            last = (await store.attempts(job_id))[-1]
            assert last.state is S and last.started_at is not None
            started[job_id] = last.started_at
        assert (await store.get_job("orphan")).attempt == 2  # type: ignore[union-attr]
        assert min(started, key=started.__getitem__) == "orphan"


async def _state_is(store, job_id: str, state: JobState) -> bool:  # type: ignore[no-untyped-def]
    record = await store.get_job(job_id)
    return record is not None and record.state is state


async def _attempt_is(store, job_id: str, attempt: int) -> bool:  # type: ignore[no-untyped-def]
    record = await store.get_job(job_id)
    return record is not None and record.attempt == attempt


async def _terminal(store, job_id: str) -> bool:  # type: ignore[no-untyped-def]
    record = await store.get_job(job_id)
    return record is not None and record.terminal
