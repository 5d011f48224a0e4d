"""The single node's job queue: one ``LocalQueue`` that everybody publishes to and the node consumes.

The node's parts are built before the node knows its callbacks (``NodeParts``
takes a publisher and a consumer *factory*), while the webhooks and
AdminService publish from the start. So ``SingleNodeQueue`` opens the
``LocalQueue`` at once with zero free slots and callbacks that forward to
whatever the node hands ``intake`` later. Stopping the intake only pauses
deliveries: the node still publishes the jobs it requeues on shutdown, and
the queue itself is closed last, by its owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from common.lifecycle import StartStop
from common.queue.disposition import Disposition
from common.queue.errors import QueueUnavailable
from common.queue.topology import NEW_WORK
from common.rpc import jobs_pb2
from orchestrator.queue.contract import OnDeadLetter, OnJob, dead_letter_call
from orchestrator.queue.local import LocalQueue


class SingleNodeQueue(StartStop):
    """``JobPublisher`` for everyone, ``JobConsumer`` (via ``intake``) for the node.

    Lifetime: ``start()``, then ``publish`` any time; ``intake`` is called
    once by the node; ``stop()`` last. Also an async context manager.
    """

    def __init__(self, path: Path, labels: Sequence[str], every_label: bool) -> None:
        self._on_job: OnJob | None = None
        self._on_dead: OnDeadLetter | None = None
        self.queue = LocalQueue(path, () if every_label else labels, self._forward_job, self._forward_dead,
                                free_slots=0, every_label=every_label)

    async def start(self) -> None:
        await self.queue.start()

    async def stop(self, grace: float = 30.0) -> None:
        await self.queue.stop(grace)

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = NEW_WORK) -> None:
        await self.queue.publish(requests, priority)

    async def dead_letters(self) -> list[tuple[str | None, str]]:
        return await self.queue.dead_letters()

    async def _forward_job(self, request: jobs_pb2.JobRequest) -> Disposition:
        if self._on_job is None:  # only reachable with free slots, which the intake sets
            return Disposition.REQUEUE
        return await self._on_job(request)

    async def _forward_dead(self, job_id: str | None, reason: str,
                            request: jobs_pb2.JobRequest | None = None) -> None:
        if self._on_dead is None:
            # The queue keeps the row and calls again once the node's intake is started.
            raise QueueUnavailable("the node is not consuming yet")
        await dead_letter_call(self._on_dead)(job_id, reason, request)

    def intake(self, labels: Sequence[str], on_job: OnJob, on_dead: OnDeadLetter, free_slots: int) -> _Intake:
        """``NodeParts.consumer_factory``: the node's view of this queue as its consumer."""
        return _Intake(self, on_job, on_dead, free_slots)


class _Intake:
    """``JobConsumer`` over a ``SingleNodeQueue``: start routes deliveries to the node, stop pauses them."""

    def __init__(self, owner: SingleNodeQueue, on_job: OnJob, on_dead: OnDeadLetter, free_slots: int) -> None:
        self.owner = owner
        self.on_job = on_job
        self.on_dead = on_dead
        self.free_slots = free_slots

    async def start(self) -> None:
        self.owner._on_job, self.owner._on_dead = self.on_job, self.on_dead
        await self.owner.queue.set_free_slots(self.free_slots)

    async def set_free_slots(self, free_slots: int) -> None:
        await self.owner.queue.set_free_slots(free_slots)

    async def set_paused_labels(self, labels: frozenset[str]) -> None:
        await self.owner.queue.set_paused_labels(labels)

    async def stop(self, grace: float = 30.0) -> None:
        await self.owner.queue.pause(grace)
