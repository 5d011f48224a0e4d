"""A request the queue gave up on (poison, unroutable, attempts used up): its job ends ``failed``.

Called for every dead letter, by whichever node takes it from the shared
notify queue (or the single node's dead-letter table). A store outage makes it
raise ``StoreUnavailable``: the queue tries it again later and never gives up
on it while the store is away.
"""

from __future__ import annotations

import logging

from common.rpc import jobs_pb2
from orchestrator.node.events import announce_transition, job_event
from orchestrator.node.lifecycle import NodeServices
from orchestrator.store import JobState

log = logging.getLogger(__name__)


async def fail_dead_letter(services: NodeServices, job_id: str | None, reason: str,
                           request: jobs_pb2.JobRequest | None) -> None:
    """End the dead letter's job ``failed`` with ``reason``, with its event.

    A request no node ever stored (unroutable: no node serves its label) is
    stored first from ``request``, so it still ends as a failed job with its
    event - nothing is dropped silently. Only an undecodable body with no
    job id is left to the retained dead-letter copy (logged).
    """
    store = services.store
    job = await store.get_job(job_id) if job_id else None
    if job is None and request is not None:
        job = await store.submit(request)
    if job is None:
        log.error("dead letter of an unknown job: %s", reason, extra={"fields": {"job": job_id or "?"}})
        return
    if job.state is not JobState.QUEUED:
        # A host holds (or finished) it: the copy the queue gave up on changes nothing.
        log.warning("dead letter of a job that is %s: ignored (%s)", job.state.name.lower(), reason,
                    extra={"fields": {"job": job.job_id}})
        return
    event = job_event(job, JobState.FAILED, attempt=job.attempt, reason=reason)
    await announce_transition(store, services.events, services.host, job.job_id, job.attempt, JobState.FAILED,
                              reason, event)
