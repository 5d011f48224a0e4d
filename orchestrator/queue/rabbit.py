"""The multi-host job consumer: a node's label queues on RabbitMQ."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from aio_pika.abc import AbstractIncomingMessage

from common.queue.codec import decode_job_request, job_id_in
from common.queue.connection import BrokerLink
from common.queue.disposition import Disposition
from common.queue.label_queues import prepare_label_queue
from common.queue.topology import JOB_ID_HEADER, REASON_HEADER, Topology, validate_label
from common.queue.worker import QueueWorker, WorkerStats
from orchestrator.queue.contract import DEFAULT_MAX_ATTEMPTS, OnDeadLetter, OnJob, dead_letter_call, request_in

log = logging.getLogger(__name__)


def dead_letter_reason(headers: Mapping[str, object]) -> str:
    """The reason a dead letter carries, or one derived from RabbitMQ's own ``x-death``."""
    reason = headers.get(REASON_HEADER)
    if isinstance(reason, str) and reason:
        return reason
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        first = deaths[0]
        return f"dead-lettered by RabbitMQ ({first.get('reason', 'unknown')}) from queue {first.get('queue', '?')}"
    return "dead-lettered without a reason"


class RabbitJobConsumer:
    """``JobConsumer`` on RabbitMQ: consumes ``solstice.jobs.<label>`` for each served label.

    With ``watch_dead_letters`` (the default) the node also takes its share of
    ``solstice.jobs.dead.notify`` and calls ``on_dead_letter`` for each dead
    letter (poison, unroutable, retries exhausted), whichever node caused it;
    the retained copy stays in ``solstice.jobs.dead`` for operators.
    """

    def __init__(
        self,
        url: str,
        labels: Sequence[str],
        on_job: OnJob,
        on_dead_letter: OnDeadLetter,
        free_slots: int,
        topology: Topology = Topology(),
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        watch_dead_letters: bool = True,
    ) -> None:
        self.labels = tuple(validate_label(label) for label in labels)
        self.topology = topology
        self._on_job = on_job
        self._on_dead_letter = dead_letter_call(on_dead_letter)
        self._free_slots = free_slots
        self._paused: frozenset[str] = frozenset()
        self._max_attempts = max_attempts
        self._watch = watch_dead_letters
        self._link = BrokerLink(url)
        self._jobs: QueueWorker | None = None
        self._dead: QueueWorker | None = None

    @property
    def in_flight(self) -> int:
        return self._jobs.in_flight if self._jobs else 0

    @property
    def connected(self) -> bool:
        """True while the node is connected to the broker (False while it reconnects)."""
        return self._link.connected

    @property
    def stats(self) -> WorkerStats:
        """Counters of the job deliveries (redeliveries, acks, dead letters...) since ``start``."""
        return self._jobs.stats if self._jobs else WorkerStats()

    async def start(self) -> None:
        await self._link.open_with(self._consume)

    async def _consume(self) -> None:
        connection = self._link.connection
        self._jobs = QueueWorker(
            connection, self._handle_job, self.topology.jobs_dead_exchange, self._max_attempts, name="job consumer"
        )
        await self._jobs.set_paused(frozenset(self.topology.label_queue(label) for label in self._paused))
        await self._jobs.open(self._free_slots)
        for label in self.labels:
            arguments = await prepare_label_queue(connection, self.topology, label)  # priorities, or as it is
            await self._jobs.consume(await self.topology.declare_label_queue(self._jobs.channel, label, arguments))
        if self._watch:
            self._dead = QueueWorker(
                connection, self._handle_dead_letter, None, self._max_attempts, name="dead-letter watcher"
            )
            await self._dead.open(8)
            await self.topology.declare_jobs(self._dead.channel)
            notify = await self._dead.channel.get_queue(self.topology.jobs_dead_notify_queue)
            await self._dead.consume(notify)

    async def set_free_slots(self, free_slots: int) -> None:
        """Change the prefetch; never blocks on an outage (the value applies on reconnection)."""
        self._free_slots = free_slots
        if self._jobs is not None:
            await self._jobs.set_prefetch(free_slots)

    async def set_paused_labels(self, labels: frozenset[str]) -> None:
        """Stop consuming the queues of ``labels`` (resume the others); never blocks on an outage."""
        self._paused = frozenset(labels)
        if self._jobs is not None:
            await self._jobs.set_paused(frozenset(self.topology.label_queue(label) for label in labels))

    async def stop(self, grace: float = 30.0) -> None:
        for worker in (self._jobs, self._dead):
            if worker is not None:
                await worker.stop(grace)
        await self._link.close()

    async def _handle_job(self, message: AbstractIncomingMessage) -> Disposition:
        request = decode_job_request(message.body)
        return await self._on_job(request)

    async def _handle_dead_letter(self, message: AbstractIncomingMessage) -> Disposition:
        headers = dict(message.headers or {})
        job_id = headers.get(JOB_ID_HEADER)
        # message_id is no help: aio-pika invents one when a producer sets none.
        await self._on_dead_letter(
            str(job_id) if job_id else job_id_in(message.body), dead_letter_reason(headers), request_in(message.body)
        )
        return Disposition.ACK
