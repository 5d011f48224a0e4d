"""The node's outbox: everything the node must publish - job events, and the job requests of
attempts it queued again - leaves from one task, in order, and survives outages and crashes.

Attempts announce through it, so a broker outage never stalls a job (a runner's ReportStep, a
finalize): events wait and go out once the broker is back, however long that takes. With a
store (``durable``) every message is also in the store's outbox before it is queued here, and
deleted once the broker confirmed it: a node that crashes loses none. Its restart publishes
what it left (``recover``), and live nodes take over the rows of a host whose heartbeat lapsed
(``adopt``). Delivery is at least once; consumers dedupe (events on ``event_id``, requests by
the idempotent claim).

A requeue or a retry stores its new attempt's ``queued`` event and request with the change
itself (``apply``: one transaction), so a stored ``queued`` attempt always reaches the queue;
and since a job's messages leave one batch after another, its request never overtakes the
``queued`` event (the node that takes it announces ``provisioning`` after that).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from common.queue.codec import encode_job_event, encode_job_request
from common.queue.connection import publish_all
from common.queue.errors import QueueError
from common.queue.events import EventPublisher
from common.queue.publisher import JobPublisher
from common.rpc import jobs_pb2
from orchestrator.store import Announce, JobRecord, OutboxMessage, OutboxRequest, Store, StoreError, message_id

log = logging.getLogger(__name__)
T = TypeVar("T")


class Outbox:
    """An ``EventPublisher`` that never blocks (``publish`` queues, ``run`` sends in order), and
    the way new attempts reach the job queue (``apply``, ``send``).

    Lifetime: ``run()`` as a task the node owns; before cancelling it, ``flush(timeout)`` lets it
    send what is left. A failed publish is retried (the same batch, so order holds) after
    ``retry_delay``; past ``limit`` queued messages the oldest are dropped from memory with an
    error line (their rows wait in the store for the next start).
    """

    def __init__(self, inner: EventPublisher, jobs: JobPublisher | None = None, limit: int = 100_000,
                 batch: int = 256, retry_delay: float = 1.0, durable: tuple[Store, str] | None = None) -> None:
        self.inner = inner
        self.jobs = jobs
        # (store, host): the store's outbox backs the queue; ids of the queued messages it holds
        self.durable = durable
        self._stored: set[str] = set()
        self._deleting: set[str] = set()  # published, their rows being deleted: not to be recovered again
        self.limit = limit
        self.batch = batch
        self.retry_delay = retry_delay
        self.dropped = 0
        self._queue: deque[OutboxMessage] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        """Queue ``events``; ``InvalidMessage`` (nothing queued) if one can never be published.

        A store outage does not stall the announcing job: the events are then kept in memory only.
        """
        if not events:
            return
        self._validate(events)
        if self.durable is not None:
            store, host = self.durable
            try:
                await store.outbox_add(host, events)
            except StoreError as err:
                log.error("could not store job events in the outbox (kept in memory only): %s", err)
            else:
                self._stored.update(event.event_id for event in events)
        self._enqueue(events)

    async def send(self, messages: Sequence[OutboxMessage]) -> None:
        """Store ``messages`` (events and requests) in the outbox, then queue them; unlike
        ``publish``, a store outage raises (``StoreUnavailable``): the caller's request fails."""
        if not messages:
            return
        self._validate(messages)
        if self.durable is not None:
            store, host = self.durable
            await store.outbox_add(host, messages)
        self.publish_stored(messages)

    async def apply(self, change: Callable[[Announce], Awaitable[T]],
                    messages: Callable[[JobRecord], Sequence[OutboxMessage]]) -> T:
        """Make a store ``change`` (``Store.requeue_lapsed``, ``requeue_host``, ``retry``) that stores
        ``messages(job)`` for each job it changed in this node's outbox in the same transaction,
        then queue them. Needs a durable outbox."""
        if self.durable is None:
            raise RuntimeError("Outbox.apply needs a durable outbox (a store and a host)")
        made: list[OutboxMessage] = []

        def collect(job: JobRecord) -> Sequence[OutboxMessage]:
            these = messages(job)
            self._validate(these)
            made.extend(these)
            return these

        result = await change(Announce(self.durable[1], collect))
        self.publish_stored(made)
        return result

    def publish_stored(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue ``messages`` the store's outbox already holds (``Store.transition_announced``, ``apply``)."""
        if messages:
            if self.durable is not None:
                self._stored.update(message_id(m) for m in messages)
            self._enqueue(messages)

    def _validate(self, messages: Sequence[OutboxMessage]) -> None:
        # A message that can never be published must not block the ones behind it forever.
        for message in messages:
            if isinstance(message, OutboxRequest):
                if self.jobs is None:
                    raise QueueError("this outbox has no job publisher: it cannot send job requests")
                encode_job_request(message.request)
            else:
                encode_job_event(message)

    def _enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        self._queue.extend(messages)
        excess = len(self._queue) - self.limit
        if excess > 0:
            for _ in range(excess):
                self._stored.discard(message_id(self._queue.popleft()))  # its row waits for a restart
            self.dropped += excess
            log.error("outbox full: dropped the %d oldest messages from memory", excess)
        self._idle.clear()
        self._ready.set()

    async def run(self) -> None:
        """Send queued messages in order until cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = self._take_batch()
                try:
                    await self._send(batch)
                except QueueError as err:
                    self._queue.extendleft(reversed(batch))  # first again: order holds
                    log.error("could not publish the outbox (retrying): %s", err,
                              extra={"fields": {"jobs": ",".join(sorted({m.job_id for m in batch}))}})
                    await asyncio.sleep(self.retry_delay)
                except BaseException:
                    self._queue.extendleft(reversed(batch))  # cancelled mid-send: flush() may not have them
                    raise
                else:
                    await self._forget(batch)
            self._idle.set()

    async def _send(self, batch: Sequence[OutboxMessage]) -> None:
        """Publish one batch: its events, and its requests by priority, at the same time (a
        batch holds one message per job, so nothing in it needs to wait for another)."""
        events = [m for m in batch if not isinstance(m, OutboxRequest)]
        requests: dict[int, list[jobs_pb2.JobRequest]] = {}
        for message in batch:
            if isinstance(message, OutboxRequest):
                requests.setdefault(message.priority, []).append(message.request)
        sends: list[Awaitable[None]] = [self.inner.publish(events)] if events else []
        if requests:
            assert self.jobs is not None  # _validate refused requests without a job publisher
            jobs = self.jobs
            sends += [jobs.publish(group, priority=priority) for priority, group in sorted(requests.items())]
        await publish_all(sends)

    async def _forget(self, batch: Sequence[OutboxMessage]) -> None:
        """Delete the outbox rows of published messages (a failure only means they go out again later)."""
        ids = [message_id(m) for m in batch if message_id(m) in self._stored]
        if self.durable is None or not ids:
            return
        self._stored.difference_update(ids)
        self._deleting.update(ids)
        try:
            await self.durable[0].outbox_delete(ids)
        except StoreError as err:
            log.error("could not delete published messages from the outbox (sent again later): %s", err)
        finally:
            self._deleting.difference_update(ids)

    async def recover(self) -> int:
        """Queue what this host's outbox holds that is not queued here: what its previous process
        left (call it before announcing anything), and what a store write that committed but whose
        answer was lost (the connection died) stored with it."""
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

    def _requeue(self, rows: Sequence[tuple[int, OutboxMessage]]) -> int:
        fresh = [message for _, message in rows if message_id(message) not in self._stored | self._deleting]
        if fresh:
            log.info("publishing %d messages left in the outbox", len(fresh))
            self.publish_stored(fresh)
        return len(fresh)

    def _take_batch(self) -> list[OutboxMessage]:
        """The oldest message of each job, in queue order: a batch's messages may be published
        concurrently (and a retried one may land after the others), so a job's messages go in
        separate batches. A job's later messages are passed over, not a stop: a busy node queues
        each job's events back to back, and stopping there made batches of one event."""
        batch: list[OutboxMessage] = []
        jobs: set[str] = set()
        later: list[OutboxMessage] = []
        # Bounded scan: one job with a long backlog must not make every batch walk all of it.
        budget = 4 * self.batch
        while self._queue and len(batch) < self.batch and budget > 0:
            budget -= 1
            message = self._queue.popleft()
            if message.job_id in jobs:
                later.append(message)
            else:
                jobs.add(message.job_id)
                batch.append(message)
        self._queue.extendleft(reversed(later))  # still ahead of everything not scanned
        return batch

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued message was sent; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
