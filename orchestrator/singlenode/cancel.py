"""Closing a pull request cancels its jobs on the single node (the integration's ``JobCanceller``)."""

from __future__ import annotations

import logging

from common.queue.events import EventPublisher
from integration.cancel import CancelRequest
from orchestrator.node.events import announce, job_event
from orchestrator.node.node import Node
from orchestrator.store import JobFilter, JobNotFound, JobState, Store

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
            checkout = before.request.checkout
            if before.terminal or checkout.forge != request.forge or checkout.pull_request != request.pull_request:
                continue
            try:
                job = await self.store.cancel(before.job_id, request.reason)
            except JobNotFound:
                continue
            if job.state is not JobState.CANCELLED:
                continue
            reached += 1
            if before.state is JobState.QUEUED and job.attempt == before.attempt:
                # Nobody holds a queued job: its end has to be announced here.
                await announce(self.events, job_event(job, JobState.CANCELLED, reason=request.reason))
            elif job.host == self.node.host:
                self.node.cancel_local(job.job_id, request.reason)
        log.info("pull request closed: jobs cancelled",
                 extra={"fields": {"repo": request.repo, "pull_request": request.pull_request, "jobs": reached}})
        return reached
