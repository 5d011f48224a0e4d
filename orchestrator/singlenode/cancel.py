"""What the forges ask of the single node besides builds: cancel a PR's jobs, re-run jobs.

``NodeCanceller`` is the integration's ``JobCanceller`` (a closed pull
request, or the superseded heads of one) and ``NodeRetrier`` its
``JobRetrier`` (GitHub's "Re-run" on a Solstice check run, "Re-run all
checks" on its suite); both act on the store and the node the way
AdminService's Cancel and Retry do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from common.queue.events import EventPublisher
from common.rpc import jobs_pb2
from integration.cancel import CancelRequest, CommitRetryRequest, RetryRequest
from orchestrator.node.cancel import cancel_job
from orchestrator.node.node import Node
from orchestrator.node.outbox import Outbox
from orchestrator.node.requeue import retry_job
from orchestrator.store import JobFilter, JobNotFound, JobState, RetryNotAllowed, Store

log = logging.getLogger(__name__)

SCAN_LIMIT = 1000  # newest jobs of the repository looked at; an open PR's jobs are recent


class NodeCanceller:
    """Cancels the pull request's unfinished jobs in the store, and locally when they run here."""

    def __init__(self, store: Store, events: EventPublisher, node: Node) -> None:
        self.store = store
        self.events = events
        self.node = node

    async def cancel(self, request: CancelRequest) -> int:
        jobs = await self.store.list_jobs(JobFilter(repo=request.repo, limit=SCAN_LIMIT))
        reached = 0
        for before in jobs:
            if before.terminal or not request.covers(before.request.checkout):
                continue
            try:
                # The conditional path: only whoever applies the cancellation announces it
                # (here when nobody claimed the attempt, else the holder), never both.
                job = await cancel_job(self.store, self.events, self.node, before.job_id, request.reason)
            except JobNotFound:
                continue
            if job.state is JobState.CANCELLED:
                reached += 1
        log.info("pull request jobs cancelled: %s", request.reason,
                 extra={"fields": {"repo": request.repo, "pull_request": request.pull_request, "jobs": reached}})
        return reached


class NodeRetrier:
    """Starts a new attempt of a finished job of the asking repository, and queues it (through
    the node's outbox: the new attempt and its request are stored together)."""

    def __init__(self, store: Store, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    async def retry(self, request: RetryRequest) -> bool:
        fields = {"job_id": request.job_id, "repo": request.repo, "forge": request.forge}
        job = await self.store.get_job(request.job_id)
        checkout = job.request.checkout if job is not None else None
        if job is None or checkout is None or (checkout.forge, checkout.repo) != (request.forge, request.repo):
            log.warning("re-run refused: no such job of this repository", extra={"fields": fields})
            return False
        return await self._retry(job.job_id, fields, request.reason)

    async def retry_commit(self, request: CommitRetryRequest) -> int:
        jobs = await self.store.list_jobs(JobFilter(repo=request.repo, limit=SCAN_LIMIT))
        done = 0
        for job in jobs:
            checkout = job.request.checkout
            if ((checkout.forge, checkout.sha) != (request.forge, request.sha) or not job.terminal
                    or job.request.source != jobs_pb2.JOB_SOURCE_FORGE):  # a webhook's job, never an operator's
                continue
            fields = {"job_id": job.job_id, "repo": request.repo, "forge": request.forge}
            done += await self._retry(job.job_id, fields, request.reason)
        return done

    async def _retry(self, job_id: str, fields: Mapping[str, object], reason: str) -> bool:
        try:
            job = await retry_job(self.store, self.outbox, job_id)
        except RetryNotAllowed as err:
            log.info("re-run refused: %s", err, extra={"fields": fields})
            return False
        log.info("job re-run", extra={"fields": {**fields, "attempt": job.attempt, "reason": reason}})
        return True
