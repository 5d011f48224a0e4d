"""The event bus: JobEvents on the ``solstice.events`` topic exchange.

The orchestrator publishes one event per job or step state change; the
integration's reporter consumes them from its own durable queue and reports
to the forge. Routing keys are described in ``common.queue.topology``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from common.queue.codec import decode_job_event, encode_job_event, event_routing_key
from common.queue.connection import BrokerLink, LinkedPublisher, publish_all
from common.queue.disposition import Disposition
from common.queue.errors import PublishFailed
from common.queue.topology import JOB_ID_HEADER, SCHEMA_HEADER, Topology
from common.queue.worker import QueueWorker, WorkerStats
from common.rpc import jobs_pb2

log = logging.getLogger(__name__)

EventHandler = Callable[[jobs_pb2.JobEvent], Awaitable[Disposition]]


class EventPublisher(Protocol):
    """Publishes job events; returns when every event is durably stored."""

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None: ...


class RabbitEventPublisher(LinkedPublisher):
    """``EventPublisher`` on RabbitMQ with confirms; lifetime as ``LinkedPublisher``.

    An event nobody subscribed to is returned by the broker and dropped with a
    debug line: unlike a job, an event without subscribers has no one to miss it.
    ``subscribers`` (``(name, bindings)`` pairs, e.g. ``("reporter", ("#",))``)
    are declared at ``start``, so a subscriber that has never run yet (the
    integration started after the orchestrator) still finds every event in
    its queue; give the same bindings its ``EventConsumer`` uses.
    """

    def __init__(
        self,
        url: str,
        topology: Topology = Topology(),
        publish_timeout: float = 60.0,
        subscribers: Sequence[tuple[str, tuple[str, ...]]] = (),
    ) -> None:
        super().__init__(url, publish_timeout)
        self.topology = topology
        self.subscribers = tuple(subscribers)
        for name, _ in self.subscribers:
            topology.event_queue(name)  # validate before connecting
        self._events: AbstractExchange | None = None

    async def _declare(self, channel: AbstractChannel) -> None:
        self._events = await self.topology.declare_events(channel)
        for name, bindings in self.subscribers:
            await self.topology.declare_event_queue(channel, name, bindings)

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        if self._events is None:
            raise PublishFailed("the event publisher was not started")
        messages = [
            (
                event_routing_key(event),
                aio_pika.Message(
                    encode_job_event(event),
                    message_id=event.event_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="application/x-protobuf",
                    type="solstice.v1.JobEvent",
                    headers={SCHEMA_HEADER: event.schema_version or jobs_pb2.SCHEMA_VERSION_1,
                             JOB_ID_HEADER: event.job_id},
                ),
            )
            for event in events
        ]
        await publish_all([self._publish_one(key, message) for key, message in messages])

    async def _publish_one(self, key: str, message: aio_pika.Message) -> None:
        assert self._events is not None
        if not await self._link.publish(self._events, message, key):
            log.debug("event %s had no subscriber (routing key %s)", message.message_id, key)


class EventConsumer:
    """Delivers job events from the durable queue ``solstice.events.<name>`` to ``handler``.

    The message is acknowledged only after ``handler`` returns ``Disposition.ACK``;
    ``REQUEUE`` asks for it again later; a handler that keeps raising gets the
    event dead-lettered after ``max_attempts``. Undecodable events are
    dead-lettered at once. Lifetime: ``start()`` then ``stop()``.
    """

    def __init__(
        self,
        url: str,
        name: str,
        handler: EventHandler,
        topology: Topology = Topology(),
        bindings: tuple[str, ...] = ("#",),
        prefetch: int = 16,
        max_attempts: int = 5,
    ) -> None:
        self.topology = topology
        self.name = name
        self.bindings = bindings
        self.prefetch = prefetch
        self._handler = handler
        self._link = BrokerLink(url)
        self._max_attempts = max_attempts
        self._worker: QueueWorker | None = None

    @property
    def stats(self) -> WorkerStats:
        """Counters of the event deliveries since ``start``."""
        return self._worker.stats if self._worker else WorkerStats()

    async def start(self) -> None:
        await self._link.open_with(self._consume)

    async def _consume(self) -> None:
        self._worker = QueueWorker(
            self._link.connection,
            self._handle,
            self.topology.events_dead_exchange,
            self._max_attempts,
            name=f"event consumer {self.name}",
        )
        await self._worker.open(self.prefetch)
        queue = await self.topology.declare_event_queue(self._worker.channel, self.name, self.bindings)
        await self._worker.consume(queue)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop consuming, let running handlers finish (up to ``grace`` s), close."""
        if self._worker is not None:
            await self._worker.stop(grace)
        await self._link.close()

    async def _handle(self, message: AbstractIncomingMessage) -> Disposition:
        return await self._handler(decode_job_event(message.body))
