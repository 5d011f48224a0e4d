"""New attempts reach the job queue through the node's outbox, stored with the attempt.

A requeue (a lapsed host's jobs, this host's own at start-up or shutdown, or
the ones it lost track of while it runs: ``finish_lost``) and a
retry make attempt N+1 ``queued`` in ONE store transaction that also puts, in
this node's outbox, the job's event and - for a queued attempt - its request
(``requeue_messages``). The outbox then publishes them in order: the ``queued``
event first, then the request. A publish that fails (a broker outage, however
long) is retried from the outbox, and a node that dies first leaves the rows to
its restart or to a live node (``Outbox.adopt``): a stored ``queued`` attempt
always reaches the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from common.queue.topology import attempt_priority
from orchestrator.node.events import job_event, new_event_id
from orchestrator.node.outbox import Outbox
from orchestrator.node.outcomes import Outcomes
from orchestrator.store import JobRecord, JobState, OutboxMessage, OutboxRequest, Store

log = logging.getLogger(__name__)


def requeue_messages(job: JobRecord) -> Sequence[OutboxMessage]:
    """What publishes a job a requeue or a retry changed: its event, then, when its new attempt
    is queued, its request (at the priority of a later attempt: ahead of new work)."""
    event = job_event(job, job.state, reason=job.reason)
    if job.state is not JobState.QUEUED:
        return [event]
    return [event, OutboxRequest(new_event_id(), job.request, attempt_priority(job.attempt))]


def _log_changed(changed: Sequence[JobRecord], what: str) -> None:
    if changed:
        queued = sum(job.state is JobState.QUEUED for job in changed)
        log.info(what, extra={"fields": {"requeued": queued, "errored": len(changed) - queued}})


async def take_back_own(store: Store, outbox: Outbox, host: str, max_attempts: int, why: str,
                        keep: Collection[str] = (), claimed_before: float = 0.0) -> list[JobRecord]:
    """Requeue every provisioning/running attempt ``host`` holds, but those of the jobs in ``keep``
    and those claimed less than ``claimed_before`` s ago; returns the jobs changed."""
    changed = await outbox.apply(
        lambda announce: store.requeue_host(host, max_attempts, why, announce=announce, keep=keep,
                                            claimed_before=claimed_before),
        requeue_messages)
    _log_changed(changed, "requeued this host's jobs")
    return changed


async def finish_lost(store: Store, outbox: Outbox, outcomes: Outcomes, host: str, live: Callable[[], set[str]],
                      max_attempts: int, settled: float) -> list[JobRecord]:
    """Finish the attempts the store says ``host`` runs but it does not (``live()``: the jobs it
    runs or is claiming): an end kept on disk while the store was away is recorded; the rest
    (an end that could not be recorded at all, a claim whose answer was lost) are requeued -
    those claimed at least ``settled`` s ago: a claim that commits while this looks was not
    in ``live()`` yet when it was read. Also publishes what a write whose answer was lost stored
    in this host's outbox. Returns the jobs requeued."""
    await outbox.recover()
    await outcomes.replay(skip=live())
    changed = await take_back_own(store, outbox, host, max_attempts, "lost track of the job without recording its end",
                                  keep=live(), claimed_before=settled)
    for job in changed:
        log.warning("finished an attempt this node had lost track of", extra={"fields": {"job": job.job_id}})
    return changed


async def requeue_lapsed(store: Store, outbox: Outbox, stale_after: float, max_attempts: int) -> list[JobRecord]:
    """Requeue the jobs of hosts whose heartbeat is older than ``stale_after``; returns the jobs changed."""
    changed = await outbox.apply(
        lambda announce: store.requeue_lapsed(stale_after, max_attempts, announce=announce), requeue_messages)
    _log_changed(changed, "requeued jobs of lapsed hosts")
    return changed


async def retry_job(store: Store, outbox: Outbox, job_id: str) -> JobRecord:
    """Start a new attempt of a finished job and queue it (``JobNotFound``, ``RetryNotAllowed``)."""
    return await outbox.apply(lambda announce: store.retry(job_id, announce=announce), requeue_messages)
