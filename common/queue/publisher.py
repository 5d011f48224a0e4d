"""Publishing job requests: the ``JobPublisher`` interface and its RabbitMQ implementation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from pamqp.common import FieldTable

from common.queue.codec import encode_job_request
from common.queue.connection import LinkedPublisher, publish_all
from common.queue.errors import PublishFailed
from common.queue.topology import (
    JOB_ID_HEADER,
    NEW_WORK,
    REASON_HEADER,
    ROUTING_KEY_HEADER,
    SCHEMA_HEADER,
    Topology,
)
from common.rpc import jobs_pb2

log = logging.getLogger(__name__)


class JobPublisher(Protocol):
    """Hands job requests to the queue.

    ``publish`` returns only when every request is durably stored (queued for
    its label, or dead-lettered with a reason when no node serves the label);
    otherwise it raises a ``QueueError``. A request may be stored twice after
    a lost confirm: consumers deduplicate on ``job_id``. ``priority``
    (``topology.NEW_WORK`` or ``ANOTHER_ATTEMPT``): higher goes first.
    """

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = NEW_WORK) -> None: ...


def job_message(request: jobs_pb2.JobRequest, headers: FieldTable | None = None,
                priority: int = NEW_WORK) -> aio_pika.Message:
    """The persistent AMQP message carrying ``request``."""
    body = encode_job_request(request)
    return aio_pika.Message(
        body,
        message_id=request.job_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=priority or None,
        content_type="application/x-protobuf",
        type="solstice.v1.JobRequest",
        headers={
            SCHEMA_HEADER: request.schema_version or jobs_pb2.SCHEMA_VERSION_1,
            JOB_ID_HEADER: request.job_id,
            **(headers or {}),
        },
    )


class RabbitJobPublisher(LinkedPublisher):
    """``JobPublisher`` on RabbitMQ with publisher confirms; lifetime as ``LinkedPublisher``."""

    def __init__(self, url: str, topology: Topology = Topology(), publish_timeout: float = 60.0) -> None:
        super().__init__(url, publish_timeout)
        self.topology = topology
        self._jobs: AbstractExchange | None = None
        self._dead: AbstractExchange | None = None

    async def _declare(self, channel: AbstractChannel) -> None:
        self._jobs = await self.topology.declare_jobs(channel)
        self._dead = await channel.get_exchange(self.topology.jobs_dead_exchange)

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = NEW_WORK) -> None:
        """Publish all ``requests`` concurrently; return when all are confirmed."""
        # Encoding validates every request before any is published.
        messages = [(request.runs_on, job_message(request, priority=priority)) for request in requests]
        await publish_all([self._publish_one(label, message) for label, message in messages])

    async def _publish_one(self, label: str, message: aio_pika.Message) -> None:
        assert self._jobs is not None and self._dead is not None, "start() the publisher first"
        if await self._link.publish(self._jobs, message, label):
            return
        reason = f"unroutable: no queue serves runs_on label {label!r} (no orchestrator node has this image)"
        log.warning("job dead-lettered", extra={"fields": {"job_id": message.message_id, "reason": reason}})
        message.headers = {**(message.headers or {}), REASON_HEADER: reason, ROUTING_KEY_HEADER: label}
        if not await self._link.publish(self._dead, message, label):
            raise PublishFailed(f"job {message.message_id} is unroutable "
                                "and the dead-letter exchange has no queue bound")
