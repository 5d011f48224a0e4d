"""Job events: one ``JobEvent`` per applied job or step state change.

Only a change the store actually applied is announced (a transition the
store ignored - stale attempt, duplicate - publishes nothing), so a consumer
never sees a job finish twice. Publishing is after the store write: a lost
publish is logged, never a reason to undo the state change.

Attempts announce through an ``EventOutbox``: events leave in order from one
task the node owns, so a broker outage never stalls a job (a runner's
ReportStep, a finalize) - they wait and go out once the broker is back.
With a store (``durable``) each event is also written to the store's
outbox before ``publish`` returns and deleted once the broker confirmed it:
a node that crashes loses none. Its restart publishes what it left
(``recover``), and live nodes take over the rows of a host whose heartbeat
lapsed (``adopt``). Delivery is at least once; consumers dedupe on
``event_id``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from common.queue.codec import encode_job_event
from common.queue.errors import QueueError
from common.queue.events import EventPublisher
from common.rpc import jobs_pb2
from orchestrator.store import JobRecord, JobState, Store, StoreError

log = logging.getLogger(__name__)

# Event ids only need to be unique (consumers dedupe on them), not unguessable: 128 bits
# from a generator seeded once from the OS, instead of a getrandom() call per event.
_event_ids = random.Random(os.urandom(32))


def new_event_id() -> str:
    """A fresh 32-hex-digit event id."""
    return f"{_event_ids.getrandbits(128):032x}"


class NullEventPublisher:
    """An ``EventPublisher`` with no subscribers (a node started without an event bus)."""

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        return None


def job_event(job: JobRecord, state: JobState, *, attempt: int | None = None, host: str = "",
              reason: str = "", steps: Sequence[jobs_pb2.StepResult] = (),
              log_tail: Sequence[str] = ()) -> jobs_pb2.JobEvent:
    """A job-level event for ``job`` entering ``state``."""
    event = _event(job.request, job.attempt if attempt is None else attempt, state, host or job.host, reason)
    event.steps.extend(steps)
    event.log_tail.extend(log_tail)
    return event


def first_claim_event(request: jobs_pb2.JobRequest, host: str) -> jobs_pb2.JobEvent:
    """The ``provisioning`` event of attempt 1 of ``request``'s job, claimed by ``host``
    (for ``Store.submit_claimed``, before the job has a record)."""
    return _event(request, 1, JobState.PROVISIONING, host, "")


def _event(request: jobs_pb2.JobRequest, attempt: int, state: JobState, host: str, reason: str) -> jobs_pb2.JobEvent:
    event = jobs_pb2.JobEvent(
        schema_version=jobs_pb2.SCHEMA_VERSION_1,
        event_id=new_event_id(),
        job_id=request.job_id,
        run_id=request.run_id,
        attempt=attempt,
        key=request.key,
        name=request.name or request.key,
        state=state.to_proto(),
        reason=reason,
        host=host,
        source=request.source,  # the integration reports JOB_SOURCE_FORGE jobs only
        submitted_by=request.submitted_by,
    )
    event.checkout.CopyFrom(request.checkout)
    event.at.GetCurrentTime()
    return event


def step_event(job: JobRecord, attempt: int, host: str, step: jobs_pb2.StepResult) -> jobs_pb2.JobEvent:
    """A step-level event (``step`` set): the job stays ``running``."""
    event = job_event(job, JobState.RUNNING, attempt=attempt, host=host)
    event.step.CopyFrom(step)
    return event


async def announce(publisher: EventPublisher, *events: jobs_pb2.JobEvent) -> None:
    """Publish ``events``; a broker failure is logged (the store already holds the truth)."""
    try:
        await publisher.publish(list(events))
    except QueueError as err:
        log.error("could not publish job events: %s", err,
                  extra={"fields": {"jobs": ",".join(sorted({e.job_id for e in events}))}})


class EventOutbox:
    """An ``EventPublisher`` that never blocks: ``publish`` queues, ``run`` sends in order.

    Lifetime: ``run()`` as a task the node owns; before cancelling it,
    ``flush(timeout)`` lets it send what is left. A failed publish is retried (the
    same batch, so order holds) after ``retry_delay``; past ``limit`` queued
    events the oldest are dropped with an error line.
    """

    def __init__(self, inner: EventPublisher, limit: int = 100_000, batch: int = 256,
                 retry_delay: float = 1.0, durable: tuple[Store, str] | None = None) -> None:
        self.inner = inner
        # (store, host): the store's outbox backs the queue; ids of the queued events it holds
        self.durable = durable
        self._stored: set[str] = set()
        self.limit = limit
        self.batch = batch
        self.retry_delay = retry_delay
        self.dropped = 0
        self._queue: deque[jobs_pb2.JobEvent] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        """Queue ``events``; ``InvalidMessage`` (nothing queued) if one can never be published."""
        if not events:
            return
        for event in events:
            encode_job_event(event)  # a poison event must not block the ones behind it forever
        if self.durable is not None:
            store, host = self.durable
            try:
                await store.outbox_add(host, events)
            except StoreError as err:
                # Still sent from memory: a store outage must not stall the job either.
                log.error("could not store job events in the outbox (kept in memory only): %s", err)
            else:
                self._stored.update(event.event_id for event in events)
        self._enqueue(events)

    def publish_stored(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        """Queue ``events`` the store's outbox already holds (``Store.transition_announced``)."""
        if events:
            self._stored.update(event.event_id for event in events)
            self._enqueue(events)

    def _enqueue(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        self._queue.extend(events)
        excess = len(self._queue) - self.limit
        if excess > 0:
            for _ in range(excess):
                self._stored.discard(self._queue.popleft().event_id)  # its row waits for a restart
            self.dropped += excess
            log.error("event outbox full: dropped the %d oldest events", excess)
        self._idle.clear()
        self._ready.set()

    async def run(self) -> None:
        """Send queued events in order until cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = self._take_batch()
                try:
                    await self.inner.publish(batch)
                except QueueError as err:
                    self._queue.extendleft(reversed(batch))  # first again: order holds
                    log.error("could not publish job events (retrying): %s", err,
                              extra={"fields": {"jobs": ",".join(sorted({e.job_id for e in batch}))}})
                    await asyncio.sleep(self.retry_delay)
                except BaseException:
                    self._queue.extendleft(reversed(batch))  # cancelled mid-send: flush() may not have them
                    raise
                else:
                    await self._forget(batch)
            self._idle.set()

    async def _forget(self, batch: Sequence[jobs_pb2.JobEvent]) -> None:
        """Delete the outbox rows of published events (a failure only means they go out again later)."""
        ids = [e.event_id for e in batch if e.event_id in self._stored]
        if self.durable is None or not ids:
            return
        self._stored.difference_update(ids)
        try:
            await self.durable[0].outbox_delete(ids)
        except StoreError as err:
            log.error("could not delete published events from the outbox (sent again later): %s", err)

    async def recover(self) -> int:
        """Queue what this host's previous process left in the outbox; call before announcing anything."""
        if self.durable is None:
            return 0
        store, host = self.durable
        return self._requeue(await store.outbox_rows(host))

    async def adopt(self, stale_after: float) -> int:
        """Take over and queue the outbox rows of hosts whose heartbeat lapsed."""
        if self.durable is None:
            return 0
        store, host = self.durable
        return self._requeue(await store.outbox_adopt(host, stale_after))

    def _requeue(self, rows: Sequence[tuple[int, jobs_pb2.JobEvent]]) -> int:
        fresh = [event for _, event in rows if event.event_id not in self._stored]
        if fresh:
            log.info("publishing %d job events left in the outbox", len(fresh))
            self.publish_stored(fresh)
        return len(fresh)

    def _take_batch(self) -> list[jobs_pb2.JobEvent]:
        """The oldest event of each job, in queue order: a batch's events may be published
        concurrently (and a retried one may land after the others), so a job's events go in
        separate batches. A job's later events are passed over, not a stop: a busy node queues
        each job's events back to back, and stopping there made batches of one event."""
        batch: list[jobs_pb2.JobEvent] = []
        jobs: set[str] = set()
        later: list[jobs_pb2.JobEvent] = []
        # Bounded scan: one job with a long backlog must not make every batch walk all of it.
        budget = 4 * self.batch
        while self._queue and len(batch) < self.batch and budget > 0:
            budget -= 1
            event = self._queue.popleft()
            if event.job_id in jobs:
                later.append(event)
            else:
                jobs.add(event.job_id)
                batch.append(event)
        self._queue.extendleft(reversed(later))  # still ahead of everything not scanned
        return batch

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued event was sent; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def announce_applied(publisher: EventPublisher, write: Callable[[Sequence[jobs_pb2.JobEvent]], Awaitable[bool]],
                           *events: jobs_pb2.JobEvent) -> bool:
    """Apply a store write and announce ``events`` if it applied; True when it did.

    ``write(stored)`` makes the change and, in the same statement or
    transaction, puts ``stored`` in the store's outbox (``Store.claim``,
    ``record_step``, ``transition_announced`` take them). Through a durable
    ``EventOutbox`` ``stored`` is ``events``, so no crash can separate a
    change from its events and no extra round trip stores them; otherwise it
    is empty and the events are announced right after the write.
    """
    outbox = publisher if isinstance(publisher, EventOutbox) and publisher.durable is not None else None
    if not await write(events if outbox is not None else ()):
        return False
    if outbox is not None:
        outbox.publish_stored(events)
    else:
        await announce(publisher, *events)
    return True


async def announce_transition(store: Store, publisher: EventPublisher, host: str, job_id: str, attempt: int,
                              state: JobState, reason: str, event: jobs_pb2.JobEvent) -> bool:
    """``Store.transition`` to ``state`` announcing ``event`` (see ``announce_applied``)."""
    return await announce_applied(
        publisher, lambda stored: store.transition_announced(job_id, attempt, state, reason, host, stored), event)


async def settle(publisher: EventPublisher, timeout: float = 30.0) -> None:
    """Wait until the events announced so far have left (an ``EventOutbox``; others publish at once).

    Call it before publishing a job request whose ``queued`` event was just
    announced: the node that takes the request must not overtake that event.
    """
    if isinstance(publisher, EventOutbox) and not await publisher.flush(timeout):
        log.warning("job events still unpublished after %gs; publishing the job requests anyway", timeout)
