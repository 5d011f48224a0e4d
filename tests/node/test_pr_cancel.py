"""A closed pull request's cancel (singlenode ``NodeCanceller``) announces each cancellation once.

The race: the canceller lists a job as ``queued``, then a node claims it
before the cancel lands. The holder announces the cancellation (it tears its
VM down and finalizes); the canceller must not announce it as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

from common.rpc import jobs_pb2
from integration.cancel import CancelRequest, CommitRetryRequest
from orchestrator.node.outbox import Outbox
from orchestrator.singlenode.cancel import NodeCanceller, NodeRetrier
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


async def test_a_new_head_cancels_only_the_other_heads_jobs(tmp_path: Path) -> None:
    async with open_store(f"sqlite://{tmp_path}/state.db") as store:
        old, new = pr_job("j-old"), pr_job("j-new")
        old.checkout.sha, new.checkout.sha = "a" * 40, "b" * 40
        await store.submit(old)
        await store.submit(new)
        canceller = NodeCanceller(store, Recorder(), ThisNode())  # type: ignore[arg-type]
        reached = await canceller.cancel(CancelRequest("github", "o/r", 7, "superseded", keep_sha="b" * 40))
        assert reached == 1
        assert [(await store.get_job(j)).state for j in ("j-old", "j-new")] == [  # type: ignore[union-attr]
            JobState.CANCELLED, JobState.QUEUED]


async def test_re_run_all_checks_retries_the_commits_finished_forge_jobs(tmp_path: Path) -> None:
    async with open_store(f"sqlite://{tmp_path}/state.db") as store:
        jobs = {name: pr_job(name) for name in ("j-done", "j-running", "j-admin", "j-other-sha")}
        jobs["j-other-sha"].checkout.sha = "c" * 40
        for name, request in jobs.items():
            request.source = jobs_pb2.JOB_SOURCE_ADMIN if name == "j-admin" else jobs_pb2.JOB_SOURCE_FORGE
            await store.submit(request)
            if name != "j-running":
                await store.transition(name, 1, JobState.FAILED, "exit 1")
        published: list[str] = []

        class Queue:
            async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = 0) -> None:
                published.extend(r.job_id for r in requests)

        outbox = Outbox(Recorder(), Queue(), durable=(store, "node-here"))  # type: ignore[arg-type]
        sending = asyncio.create_task(outbox.run())
        try:
            retrier = NodeRetrier(store, outbox)
            sha = jobs["j-done"].checkout.sha
            assert await retrier.retry_commit(CommitRetryRequest("github", "o/r", sha, "re-run all")) == 1
            assert await outbox.flush(10)
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
        assert published == ["j-done"]
        assert (await store.get_job("j-done")).attempt == 2  # type: ignore[union-attr]
