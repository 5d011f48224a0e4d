"""Hosts stay alive in the store, and the jobs of dead hosts run again.

* ``heartbeat_loop``: this node's heartbeat on a timer; the reply tells it
  whether an operator drained it.
* ``sweep_loop``: any live node takes the jobs of hosts whose heartbeat
  lapsed (``Store.requeue_lapsed``; concurrent sweeps change each job once)
  and republishes the new attempts; a job out of attempts ends ``errored``.
  It also takes over the event-outbox rows such hosts left unpublished.
* ``take_back_own``: at start-up, the attempts this host's previous process
  held died with it - requeue them before the fresh heartbeat hides them.

A store or broker outage is logged and retried on the next tick; these loops
only end when cancelled (the supervisor treats any other end as fatal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from common.queue.errors import QueueError
from common.queue.events import EventPublisher
from common.queue.publisher import JobPublisher
from orchestrator.node.events import EventOutbox, announce, job_event, settle
from orchestrator.store import JobRecord, JobState, Store, StoreError

log = logging.getLogger(__name__)


async def republish(changed: Sequence[JobRecord], publisher: JobPublisher, events: EventPublisher) -> None:
    """Announce each changed job; put the ``queued`` ones back on the queue."""
    if not changed:
        return
    queued = [job for job in changed if job.state is JobState.QUEUED]
    # Announce first: once published, a node may start the new attempt and its
    # `provisioning` event must not overtake this `queued` one.
    await announce(events, *(job_event(job, job.state, reason=job.reason) for job in changed))
    if queued:
        await settle(events)
        await publisher.publish([job.request for job in queued])
    log.info("requeued jobs of lapsed hosts", extra={"fields": {
        "requeued": len(queued), "errored": len(changed) - len(queued)}})


async def take_back_own(store: Store, host: str, max_attempts: int, publisher: JobPublisher,
                        events: EventPublisher, why: str) -> list[JobRecord]:
    """Requeue every provisioning/running attempt ``host`` holds; returns the jobs changed."""
    changed = await store.requeue_host(host, max_attempts, why)
    await republish(changed, publisher, events)
    return changed


async def heartbeat_loop(store: Store, host: str, interval: float, running: Callable[[], int],
                         on_draining: Callable[[bool], None]) -> None:
    """Heartbeat every ``interval`` s; report the drain flag through ``on_draining``."""
    while True:
        try:
            record = await store.heartbeat(host, running())
        except StoreError as err:
            log.error("heartbeat failed: %s", err)
        else:
            on_draining(record.draining)
        await asyncio.sleep(interval)


async def sweep_loop(store: Store, publisher: JobPublisher, events: EventPublisher,
                     stale_after: float, max_attempts: int, interval: float) -> None:
    """Requeue the jobs of lapsed hosts every ``interval`` s; forget finished jobs' clone credentials."""
    while True:
        await asyncio.sleep(interval)
        try:
            changed = await store.requeue_lapsed(stale_after, max_attempts)
            await republish(changed, publisher, events)
            if isinstance(events, EventOutbox):
                await events.adopt(stale_after)  # the events a dead host announced but never sent
            await store.purge_clone_credentials()
        except (StoreError, QueueError) as err:
            log.error("lapsed-host sweep failed: %s", err)
