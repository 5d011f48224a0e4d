"""Every exchange, queue and header name of the queue, in one place.

Jobs: durable topic exchange ``solstice.jobs``; the routing key is the job's
``runs_on`` label. Each label has a durable queue ``solstice.jobs.<label>``
bound with exactly that key; nodes serving the label consume it. Messages that
cannot be processed (poison) or routed (no queue for the label) end in the
dead-letter exchange ``solstice.jobs.dead`` (fanout), which feeds two queues:
``solstice.jobs.dead`` keeps every dead letter for operators, and
``solstice.jobs.dead.notify`` is consumed by orchestrator nodes to mark the
job failed with the reason (one node handles each dead letter).

Events: durable topic exchange ``solstice.events``; routing key
``<kind>.<state>.<job_id>`` with kind ``job`` or ``step`` and the state in lower
case, e.g. ``job.succeeded.01J...`` or ``step.running.01J...``. Subscribers bind
their own durable queue ``solstice.events.<name>`` (``#`` for everything,
``job.#`` for job-level changes only); their dead letters collect in
the queue ``solstice.events.dead``.

Every name starts with a configurable prefix so deployments and tests can
share a broker without seeing each other's messages.

Priorities: a job's first attempt is published with ``NEW_WORK``; every later
attempt (requeued from a lost host, retried) with ``ANOTHER_ATTEMPT``, so it
goes ahead of new work instead of waiting behind the whole queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

from common.queue.errors import InvalidMessage
from common.validation import JOB_ID_RULE, LABEL_RULE, is_job_id, is_label

# Headers written by Solstice on queue messages.
SCHEMA_HEADER = "x-solstice-schema-version"
ATTEMPTS_HEADER = "x-solstice-attempts"  # failed handler runs so far
REASON_HEADER = "x-solstice-dead-reason"
JOB_ID_HEADER = "x-solstice-job-id"
ROUTING_KEY_HEADER = "x-solstice-routing-key"  # the key a dead letter was sent with

# Message priorities of job requests (label queues are declared with x-max-priority MAX_PRIORITY;
# one level above ANOTHER_ATTEMPT is left free so a later class needs no second queue migration).
NEW_WORK = 0
ANOTHER_ATTEMPT = 1
MAX_PRIORITY = 2


def attempt_priority(attempt: int) -> int:
    """The queue priority of a job request for ``attempt``: later attempts go ahead of new work."""
    return ANOTHER_ATTEMPT if attempt > 1 else NEW_WORK

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,60}")


def validate_label(label: str) -> str:
    """Return ``label`` if it may be used as a routing key and queue name."""
    if not is_label(label):
        raise InvalidMessage(f"runs_on label {label!r} is not valid: use {LABEL_RULE}")
    return label


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if it may be used as a message id and routing-key word."""
    if not is_job_id(job_id):
        raise InvalidMessage(f"job id {job_id!r} is not valid: use {JOB_ID_RULE}")
    return job_id


@dataclass(frozen=True)
class Topology:
    """Names of the broker objects for one deployment, and how to declare them."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise InvalidMessage(f"queue name prefix {self.prefix!r} may only hold letters, digits, '.', '_', '-'")

    @property
    def jobs_exchange(self) -> str:
        return f"{self.prefix}solstice.jobs"

    @property
    def jobs_dead_exchange(self) -> str:
        return f"{self.prefix}solstice.jobs.dead"

    @property
    def jobs_dead_queue(self) -> str:
        return f"{self.prefix}solstice.jobs.dead"

    @property
    def jobs_dead_notify_queue(self) -> str:
        return f"{self.prefix}solstice.jobs.dead.notify"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}solstice.events"

    @property
    def events_dead_exchange(self) -> str:
        return f"{self.prefix}solstice.events.dead"

    def label_queue(self, label: str) -> str:
        return f"{self.prefix}solstice.jobs.{validate_label(label)}"

    def migrating_queue(self, label: str) -> str:
        """Where ``label``'s requests wait while its queue is re-declared (``label_queues``)."""
        return f"{self.prefix}solstice.migrating.{validate_label(label)}"

    def event_queue(self, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise InvalidMessage(f"event subscriber name {name!r} may only hold letters, digits, '.', '_', '-'")
        return f"{self.prefix}solstice.events.{name}"

    async def declare_jobs(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare the jobs exchange and the whole dead-letter side; idempotent."""
        dead = await channel.declare_exchange(self.jobs_dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        for name in (self.jobs_dead_queue, self.jobs_dead_notify_queue):
            queue = await channel.declare_queue(name, durable=True)
            await queue.bind(dead, routing_key="")
        return await channel.declare_exchange(self.jobs_exchange, aio_pika.ExchangeType.TOPIC, durable=True)

    def label_queue_arguments(self, priorities: bool = True) -> FieldTable:
        """What a label queue is declared with (``priorities=False``: as before priorities)."""
        arguments: FieldTable = {"x-dead-letter-exchange": self.jobs_dead_exchange}
        if priorities:
            arguments["x-max-priority"] = MAX_PRIORITY
        return arguments

    async def declare_label_queue(self, channel: AbstractChannel, label: str,
                                  arguments: FieldTable | None = None) -> AbstractQueue:
        """Declare (and bind) the durable queue of one label: with priorities, unless ``arguments``
        (from ``label_queues.prepare_label_queue``) say otherwise."""
        jobs = await self.declare_jobs(channel)
        queue = await channel.declare_queue(
            self.label_queue(label),
            durable=True,
            arguments=arguments or self.label_queue_arguments(),
        )
        await queue.bind(jobs, routing_key=label)
        return queue

    async def declare_events(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare the events exchange and its dead-letter side; idempotent."""
        dead = await channel.declare_exchange(self.events_dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_queue = await channel.declare_queue(self.events_dead_exchange, durable=True)
        await dead_queue.bind(dead, routing_key="")
        return await channel.declare_exchange(self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)

    async def declare_event_queue(
        self, channel: AbstractChannel, name: str, bindings: tuple[str, ...] = ("#",)
    ) -> AbstractQueue:
        """Declare a subscriber's durable event queue bound with ``bindings``."""
        events = await self.declare_events(channel)
        queue = await channel.declare_queue(
            self.event_queue(name),
            durable=True,
            arguments={"x-dead-letter-exchange": self.events_dead_exchange},
        )
        for key in bindings:
            await queue.bind(events, routing_key=key)
        return queue
