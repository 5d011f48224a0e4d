"""A closed pull request's cancel (singlenode ``NodeCanceller``) announces each cancellation once.

The race: the canceller lists a job as ``queued``, then a node claims it
before the cancel lands. The holder announces the cancellation (it tears its
VM down and finalizes); the canceller must not announce it as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from common.rpc import jobs_pb2
from integration.cancel import CancelRequest
from orchestrator.singlenode.cancel import NodeCanceller
from orchestrator.store import JobFilter, JobRecord, JobState, Store, open_store
from tests.node.harness import job


class Recorder:
    def __init__(self) -> None:
        self.events: list[jobs_pb2.JobEvent] = []

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        self.events.extend(events)


class ThisNode:
    host = "node-here"

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def cancel_local(self, job_id: str, reason: str) -> bool:
        self.cancelled.append(job_id)
        return False


class ClaimAfterList:
    """A store whose ``list_jobs`` is followed at once by another host claiming ``job_id``."""

    def __init__(self, store: Store, job_id: str) -> None:
        self._store = store
        self._job_id = job_id

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def list_jobs(self, job_filter: JobFilter) -> list[JobRecord]:
        listed = await self._store.list_jobs(job_filter)
        assert await self._store.claim(self._job_id, 1, "node-other", "vm-x")
        return listed


def pr_job(job_id: str) -> jobs_pb2.JobRequest:
    request = job(job_id)
    request.checkout.forge = "github"
    request.checkout.repo = "o/r"
    request.checkout.pull_request = 7
    return request


async def test_cancel_racing_a_claim_is_announced_once_by_the_canceller(tmp_path: Path) -> None:
    async with open_store(f"sqlite://{tmp_path}/state.db") as store:
        await store.submit(pr_job("j-raced"))
        await store.submit(pr_job("j-queued"))
        events, node = Recorder(), ThisNode()
        canceller = NodeCanceller(ClaimAfterList(store, "j-raced"), events, node)  # type: ignore[arg-type]
        reached = await canceller.cancel(CancelRequest("github", "o/r", 7, "pull request closed"))
        assert reached == 2
        raced = await store.get_job("j-raced")
        assert raced is not None and raced.state is JobState.CANCELLED and raced.host == "node-other"
        # The canceller applied both cancellations, so it announced both (node-other announces none).
        assert sorted((e.job_id, e.state) for e in events.events) == [
            ("j-queued", jobs_pb2.JOB_STATE_CANCELLED), ("j-raced", jobs_pb2.JOB_STATE_CANCELLED)]
        assert node.cancelled == []
