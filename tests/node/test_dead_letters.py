"""A request dead-lettered before any node stored it still ends as a stored ``failed`` job with its event.

Multi-host (real RabbitMQ + PostgreSQL): the integration publishes straight to
the broker for a label no node serves; the publisher dead-letters it, and the
node - which serves another label - takes it from the shared dead-letter
notify queue. Single-node: the ``LocalQueue`` dead-letters an unserved label
on publish.
"""

from __future__ import annotations

from pathlib import Path

from common.rpc import jobs_pb2
from orchestrator.queue.contract import dead_letter_call
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import job, local_node, local_settings
from tests.waiting import async_wait_until


async def test_an_unroutable_request_becomes_a_failed_job_with_its_event(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings(host="node-a", labels=("lab-a",))):
        await cluster.publish(job("orphan-label", label="lab-nobody"), job("served", label="lab-a"))
        record = await cluster.finished("orphan-label")
        assert record.state is JobState.FAILED
        assert record.reason.startswith("unroutable: no queue serves runs_on label 'lab-nobody'")
        assert record.runs_on == "lab-nobody" and record.host == ""
        [event] = cluster.events.terminal("orphan-label")
        assert (JobState(event.state), event.reason) == (JobState.FAILED, record.reason)
        assert event.checkout.repo == "o/r"  # the integration can report it to the forge
        assert (await cluster.finished("served")).state is JobState.SUCCEEDED


async def test_single_node_unserved_label_becomes_a_failed_job(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        await node.publish(job("nobody-runs-this", label="lab-z"))

        async def failed():  # type: ignore[no-untyped-def]
            record = await node.store.get_job("nobody-runs-this")
            return record if record is not None and node.events.terminal("nobody-runs-this") else None
        record = await async_wait_until(failed, what="the dead letter to fail the job")
        assert record.state is JobState.FAILED and record.reason.startswith("unroutable")
        assert [e.reason for e in node.events.terminal("nobody-runs-this")] == [record.reason]


async def test_two_argument_dead_letter_callbacks_still_work() -> None:
    seen: list[tuple[str | None, str]] = []

    async def old_style(job_id: str | None, reason: str) -> None:
        seen.append((job_id, reason))

    got: list[jobs_pb2.JobRequest | None] = []

    async def new_style(job_id: str | None, reason: str, request: jobs_pb2.JobRequest | None = None) -> None:
        got.append(request)

    request = job("j1")
    await dead_letter_call(old_style)("j1", "why", request)
    await dead_letter_call(new_style)("j1", "why", request)
    assert seen == [("j1", "why")] and got == [request]
