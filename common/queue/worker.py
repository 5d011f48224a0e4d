"""Consuming RabbitMQ queues with ack-after-handler, bounded retries and reasoned dead letters.

``QueueWorker`` is the engine under the job consumer and the event consumer.
It owns one robust channel. Every delivery runs the handler in a task the
worker owns (so ``stop`` can wait for it and a lost connection does not
cancel it half-way). The
message is settled only after the handler returns:

* ``ACK``: acknowledged (removed).
* ``REQUEUE``: put back at the end of its queue (a confirmed copy, then the
  original is acknowledged); delivered again later, maybe elsewhere.
* ``dead_letter(reason)`` or ``PoisonMessage``: a copy carrying the reason
  header goes to the dead-letter exchange (confirmed), then the original is
  acknowledged.
* the handler raised: the message is put back at the end of its queue with
  an attempt counter header; after ``max_attempts`` failures it is
  dead-lettered with the last error.
* the handler met an outage (``ServiceUnavailable``: the store or the broker
  cannot be reached): after a pause that grows while outages go on
  (``OutagePause``, at most 2 s) the message is put back with its
  attempt counter unchanged - for as long as the outage lasts. Counted as
  ``deferred`` and logged each time.

If the connection drops (or the node dies) before the settle, the broker
delivers the message again flagged ``redelivered``: handlers must be
idempotent. Such a redelivery also counts as a failed attempt - it is put
back with the counter raised before the handler sees it - so a message that
kills its consumer every time ends in the dead-letter queue instead of
looping forever. (REQUEUE never uses the broker's requeue, whose
``redelivered`` flag would be mistaken for that.)
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_channel import RobustChannel
from pamqp.common import FieldTable

from common.queue.disposition import Action, Disposition, OutagePause, call_handler, unsettled_reason
from common.queue.errors import QueueError, QueueUnavailable
from common.queue.tasks import finish_or_cancel, pause
from common.queue.topology import ATTEMPTS_HEADER, REASON_HEADER, ROUTING_KEY_HEADER

log = logging.getLogger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[Disposition]]


def attempts_of(message: AbstractIncomingMessage) -> int:
    """How many times a handler already failed on this message."""
    value = (message.headers or {}).get(ATTEMPTS_HEADER, 0)
    return value if isinstance(value, int) else 0


def copy_message(message: AbstractIncomingMessage, drop: tuple[str, ...] = (),
                 headers: FieldTable | None = None) -> aio_pika.Message:
    """A persistent copy of ``message`` with extra ``headers``, without the headers named in ``drop``."""
    kept = {key: value for key, value in (message.headers or {}).items() if key not in drop}
    return aio_pika.Message(
        message.body,
        headers={**kept, **(headers or {})},
        message_id=message.message_id,
        content_type=message.content_type,
        type=message.type,
        priority=message.priority,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


@dataclass(frozen=True)
class WorkerStats:
    """Counters of one worker since it opened (for the admin API, logs and tests)."""

    delivered: int = 0  # messages received from the broker
    redelivered: int = 0  # of those, flagged ``redelivered``: put back with the attempt counter raised
    handled: int = 0  # handler calls started
    acked: int = 0  # acks sent on a live channel
    requeued: int = 0  # REQUEUE dispositions sent
    retried: int = 0  # handler raised; put back with an attempt counter
    deferred: int = 0  # handler met an outage; put back after a pause, the attempt counter unchanged
    dead_lettered: int = 0
    unsettled: int = 0  # settling failed on a lost channel; the broker delivers the message again


class QueueWorker:
    """Consumes queues on one channel of ``connection`` and settles each message after ``handler``.

    ``dead_exchange`` receives dead letters; None means the message is
    dropped with an error line (for queues that are copies of dead letters:
    a handler that keeps failing there is given up on, though never for an
    outage).

    Lifetime: ``open(prefetch)`` once; then ``consume`` queues declared on
    ``channel``; ``set_prefetch`` any time (0 pauses consuming), ``set_paused``
    any time (those queues are not consumed); ``stop`` once.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        handler: Handler,
        dead_exchange: str | None,
        max_attempts: int = 5,
        name: str = "queue worker",
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.name = name
        self.max_attempts = max_attempts
        self._connection = connection
        self._handler = handler
        self._dead_exchange_name = dead_exchange
        self._channel: AbstractChannel | None = None
        self._queues: list[AbstractQueue] = []
        self._tags: dict[str, str] = {}  # queue name -> consumer tag while consuming
        self._paused: frozenset[str] = frozenset()  # queue names not to consume
        self._prefetch = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()  # ends outage pauses early: a stopping worker settles at once
        self._outage = OutagePause()
        self._counts: collections.Counter[str] = collections.Counter()
        self._prefetch_lock = asyncio.Lock()

    @property
    def stats(self) -> WorkerStats:
        """A snapshot of the counters."""
        return WorkerStats(**self._counts)

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None:
            raise QueueError(f"{self.name} is not open")
        return self._channel

    @property
    def in_flight(self) -> int:
        """Messages handed to the handler and not yet settled."""
        return len(self._inflight)

    async def open(self, prefetch: int) -> None:
        """Open the channel with ``prefetch``; ``QueueUnavailable`` if the broker does not answer."""
        if prefetch < 0:
            raise ValueError("prefetch cannot be negative")
        self._prefetch = prefetch
        try:
            self._channel = await self._connection.channel(publisher_confirms=True)
            await self._apply_prefetch()
        except CONNECTION_EXCEPTIONS as err:
            raise QueueUnavailable(f"{self.name}: cannot open a channel: {err}") from err
        if isinstance(self._channel, RobustChannel):
            self._channel.reopen_callbacks.add(self._reapply_prefetch)

    async def consume(self, queue: AbstractQueue) -> None:
        """Start delivering ``queue``'s messages (unless paused by a prefetch of 0 or ``set_paused``)."""
        self._queues.append(queue)
        if self._prefetch > 0 and queue.name not in self._paused:
            await self._consume(queue)

    async def _consume(self, queue: AbstractQueue) -> None:
        callback = functools.partial(self._on_message, queue.name)
        self._tags[queue.name] = await queue.consume(callback)

    async def set_prefetch(self, prefetch: int) -> None:
        """Allow at most ``prefetch`` unsettled messages on this worker; 0 stops deliveries.

        While the connection is down the value is remembered and applied when
        the channel is restored: a capacity change is never lost to an outage.
        """
        if prefetch < 0:
            raise ValueError("prefetch cannot be negative")
        self._prefetch = prefetch
        if not self._connection.connected.is_set():
            # A robust channel would block until the broker is back; the
            # reopen callback applies the value then instead.
            log.info("%s: prefetch %d applies once the connection is back", self.name, prefetch)
            return
        try:
            await self._apply_prefetch()
        except CONNECTION_EXCEPTIONS as err:
            log.warning("%s: prefetch %d applies once the connection is back: %s", self.name, prefetch, err)

    async def set_paused(self, names: frozenset[str]) -> None:
        """Consume none of the queues named (and again every other one); like ``set_prefetch``,
        a change made while the connection is down applies when it is back."""
        self._paused = frozenset(names)
        if self._channel is None or not self._connection.connected.is_set():
            return
        try:
            await self._apply_prefetch()
        except CONNECTION_EXCEPTIONS as err:
            log.warning("%s: paused queues apply once the connection is back: %s", self.name, err)

    async def _apply_prefetch(self) -> None:
        async with self._prefetch_lock:
            prefetch = self._prefetch
            if prefetch == 0:
                # AMQP reads a prefetch of 0 as "unlimited": pause instead.
                await self._cancel_consumers()
                return
            # global_: one budget shared by every queue of the channel.
            await self.channel.set_qos(prefetch_count=prefetch, global_=True)
            for queue in self._queues:
                wanted = queue.name not in self._paused and not self._stopping
                if wanted and queue.name not in self._tags:
                    await self._consume(queue)
                elif not wanted and queue.name in self._tags:
                    await queue.cancel(self._tags.pop(queue.name))

    async def _reapply_prefetch(self, _channel: object) -> None:
        # aio-pika restores the qos and consumers it knew of when the channel
        # died; a change made while it was down is applied here.
        if self._stopping:
            return
        try:
            await self._apply_prefetch()
        except CONNECTION_EXCEPTIONS as err:
            log.warning("%s: re-applying prefetch %d failed: %s", self.name, self._prefetch, err)

    async def _cancel_consumers(self) -> None:
        for queue in self._queues:
            tag = self._tags.pop(queue.name, None)
            if tag is not None:
                await queue.cancel(tag)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop deliveries, give in-flight handlers ``grace`` seconds, then close.

        Handlers still running after the grace period are cancelled; their
        messages are unacknowledged, so the broker delivers them again.
        """
        self._stopping = True
        self._stopped.set()
        if self._channel is None:
            return
        try:
            await self._cancel_consumers()
        except CONNECTION_EXCEPTIONS as err:
            log.warning("%s: cancelling consumers failed: %s", self.name, err)
        await finish_or_cancel(self._inflight, grace)
        try:
            await self._channel.close()
        except CONNECTION_EXCEPTIONS as err:
            log.debug("%s: closing the channel failed: %s", self.name, err)

    async def _on_message(self, queue_name: str, message: AbstractIncomingMessage) -> None:
        self._counts["delivered"] += 1
        if message.redelivered:
            self._counts["redelivered"] += 1
        # aio-pika cancels the task it runs this in when the channel closes;
        # the handler runs in a task of our own so a lost connection never
        # interrupts a claim half-way (stop() waits for these tasks instead).
        task = asyncio.create_task(self._settle_after_handler(queue_name, message), name=f"{self.name} delivery")
        self._inflight.add(task)
        task.add_done_callback(self._finished)
        await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: a delivery failed", self.name, exc_info=task.exception())

    async def _settle_after_handler(self, queue_name: str, message: AbstractIncomingMessage) -> None:
        try:
            await self._process(queue_name, message)
        except CONNECTION_EXCEPTIONS as err:
            # The channel is gone; the broker redelivers the unsettled message.
            self._counts["unsettled"] += 1
            log.warning(
                "%s: could not settle a message, it will be redelivered: %s",
                self.name, err or type(err).__name__,
                extra={"fields": {"message_id": message.message_id}},
            )

    async def _process(self, queue_name: str, message: AbstractIncomingMessage) -> None:
        if message.redelivered:
            await self._count_unsettled_delivery(queue_name, message)
            return
        self._counts["handled"] += 1
        outcome = await call_handler(lambda: self._handler(message), attempts_of(message), self.max_attempts)
        self._outage.note(outcome)
        if outcome.deferred:
            delay = self._outage.next_delay()
            log.warning(
                "%s: %s; retrying in %.1fs (an outage: not counted as an attempt)", self.name, outcome.error, delay,
                extra={"fields": {"message_id": message.message_id}},
            )
            await pause(delay, self._stopped)
            await self._put_back(queue_name, message, outcome.attempts)
            self._counts["deferred"] += 1
            return
        if outcome.disposition is None:
            log.warning(
                "%s: handler failed (attempt %d of %d), retrying later: %s",
                self.name, outcome.attempts, self.max_attempts, outcome.error,
                extra={"fields": {"message_id": message.message_id}},
            )
            await self._put_back(queue_name, message, outcome.attempts)
            self._counts["retried"] += 1
            return
        disposition = outcome.disposition
        if disposition.action is Action.ACK:
            await message.ack()
            self._counts["acked"] += 1
        elif disposition.action is Action.REQUEUE:
            await self._put_back(queue_name, message, attempts_of(message))
            self._counts["requeued"] += 1
        else:
            await self.dead_letter(message, disposition.reason)

    async def _count_unsettled_delivery(self, queue_name: str, message: AbstractIncomingMessage) -> None:
        # The broker handed this message out before and never saw it settled:
        # the consumer stopped, died or lost its connection mid-handler.
        attempts = attempts_of(message) + 1
        if attempts >= self.max_attempts:
            await self.dead_letter(message, unsettled_reason(attempts))
            return
        await self._put_back(queue_name, message, attempts)

    async def _put_back(self, queue_name: str, message: AbstractIncomingMessage, attempts: int) -> None:
        """A confirmed copy of ``message`` at the end of its queue with ``attempts``; then ack the original."""
        copy = copy_message(message, headers={ATTEMPTS_HEADER: attempts})
        await self.channel.default_exchange.publish(copy, routing_key=queue_name)
        await message.ack()

    async def dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Move ``message`` to the dead-letter exchange with ``reason``, then ack it."""
        log.warning(
            "%s: message dead-lettered: %s", self.name, reason,
            extra={"fields": {"message_id": message.message_id}},
        )
        if self._dead_exchange_name is None:
            # This queue is itself fed from a dead-letter exchange that keeps a copy.
            log.error("%s: giving up on a message: %s", self.name, reason)
            await message.ack()
            self._counts["dead_lettered"] += 1
            return
        dead = await self.channel.get_exchange(self._dead_exchange_name, ensure=False)
        # Without the attempt counter: whoever handles the dead letter gets attempts of its own.
        copy = copy_message(message, drop=(ATTEMPTS_HEADER,),
                            headers={REASON_HEADER: reason, ROUTING_KEY_HEADER: message.routing_key or ""})
        await dead.publish(copy, routing_key=message.routing_key or "")
        await message.ack()
        self._counts["dead_lettered"] += 1
