"""Cancelling a job from outside its attempt (operators, a closed pull request).

``cancel_job`` moves the job's current attempt to ``cancelled`` with a
conditional transition that stores the ``cancelled`` event with it
(``Store.transition_announced``): whoever applied it announces it, exactly
once, by construction - whether or not a node holds the attempt. The node
holding it stops it (at once when that is this node, through its store
watcher when it is another) and announces nothing: its own final transition
is refused, since the attempt already ended.
"""

from __future__ import annotations

from typing import Protocol

from common.queue.events import EventPublisher
from orchestrator.node.events import announce_transition, job_event
from orchestrator.store import JobNotFound, JobRecord, JobState, Store


class CancelTarget(Protocol):
    """The node the caller runs in."""

    host: str

    def cancel_local(self, job_id: str, reason: str) -> bool: ...


async def cancel_job(store: Store, events: EventPublisher, node: CancelTarget, job_id: str,
                     reason: str) -> JobRecord:
    """Cancel ``job_id`` unless it finished; returns the job as it is now. ``JobNotFound``."""
    job = await _get(store, job_id)
    # Retried when a new attempt replaced the one read (a lapsed-host requeue meanwhile).
    for _ in range(3):
        if job.terminal:
            break
        event = job_event(job, JobState.CANCELLED, reason=reason)  # host: the attempt's holder, if any
        applied = await announce_transition(store, events, node.host, job.job_id, job.attempt,
                                            JobState.CANCELLED, reason, event)
        job = await _get(store, job_id)
        if not applied:
            continue
        if job.host == node.host:
            node.cancel_local(job.job_id, reason)
        break
    return job


async def _get(store: Store, job_id: str) -> JobRecord:
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job
