"""Exactly one announcer for every final state: a cancel made through one node just before the job
completes on another is announced, once.

Before, the node holding the attempt announced a cancellation made elsewhere - but only once its
store watcher (every ``cancel_poll``) saw it. A runner that completed first made the holder
finalize ``succeeded``; the store refused that (the attempt was cancelled) and nobody ever sent a
terminal event: the forge showed the job running forever. Here the holder's watcher is slow, so
the completion always comes first.
"""

from __future__ import annotations

from common.config import Seconds
from orchestrator.node.cancel import cancel_job
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import job, store_of
from tests.waiting import async_wait_until

P, R, C = JobState.PROVISIONING, JobState.RUNNING, JobState.CANCELLED


class OtherNode:
    """The node an operator's Cancel reached: it runs nothing."""

    host = "node-b"

    def cancel_local(self, job_id: str, reason: str) -> bool:
        return False


async def test_a_cancel_from_another_node_just_before_completion_is_announced_once(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings(timers__cancel_poll=Seconds(3600))) as node:
        await cluster.publish(job("late", steps=("sleep 1",)))

        async def running() -> bool:
            record = await cluster.store.get_job("late")
            return record is not None and record.state is R
        await async_wait_until(running, what="late running")
        # node-b's AdminService, with the node's own outbox standing in for node-b's.
        cancelled = await cancel_job(store_of(node), node.outbox, OtherNode(), "late", "cancelled from node-b")
        assert cancelled.state is C and cancelled.host == "node-a"
        # The runner completes on node-a a moment later; its `succeeded` is refused.
        await async_wait_until(lambda: node.scheduler is not None and node.scheduler.idle, what="node-a done")
        record = await cluster.finished("late")
        assert (record.state, record.reason) == (C, "cancelled from node-b")
        await cluster.events.settled("late", [P, R, C])
        [end] = cluster.events.terminal("late")
        assert end.reason == "cancelled from node-b" and end.host == "node-a"
