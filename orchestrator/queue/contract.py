"""The orchestrator side of the queue: what a node's consumer promises.

Both implementations (``RabbitJobConsumer`` for multi-host, ``LocalQueue`` for
single-node) call ``on_job`` once per delivery with a decoded, validated
``JobRequest`` and settle the message only after it returns:

* return ``Disposition.ACK`` once the claim is durable in the state store;
* ``Disposition.REQUEUE`` to have it delivered again later (it goes to the
  end of its label's queue);
* ``Disposition.dead_letter(reason)`` to give up on it.

A raising ``on_job`` is retried (from the end of the queue). A delivery that
was never settled - the node stopped, crashed or lost its connection during
``on_job`` - is delivered again, and counts as a failed attempt too. After
``max_attempts`` failed attempts, and for poison (undecodable, unknown schema
version, missing job_id/runs_on) or unroutable requests, the message is
dead-lettered and ``on_dead_letter(job_id or None, reason)`` is called so the
job can be marked failed with the reason. ``on_dead_letter`` too may be called
more than once for one dead letter. Since a message may be delivered again,
``on_job`` must be idempotent (claims are, on ``(job_id, attempt)``).

At most ``free_slots`` requests are handed out and not yet settled;
``set_free_slots`` changes that as capacity changes (0 pauses deliveries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from common.queue.disposition import Disposition
from common.rpc import jobs_pb2

OnJob = Callable[[jobs_pb2.JobRequest], Awaitable[Disposition]]
OnDeadLetter = Callable[[str | None, str], Awaitable[None]]

DEFAULT_MAX_ATTEMPTS = 5


class JobConsumer(Protocol):
    """A node's job intake. ``start`` once, ``set_free_slots`` any time, ``stop`` once."""

    async def start(self) -> None:
        """Begin delivering requests of the node's labels to ``on_job``."""

    async def set_free_slots(self, free_slots: int) -> None:
        """Allow at most ``free_slots`` unsettled requests from now on."""

    async def stop(self, grace: float = 30.0) -> None:
        """Stop deliveries; let running ``on_job`` calls finish (up to ``grace`` s) or be redelivered; close."""
