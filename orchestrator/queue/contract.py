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
job can be marked failed with the reason. A callback that takes a ``request``
parameter also gets the decoded ``JobRequest`` (None when the body does not
decode): a request dead-lettered before any node stored it (unroutable: no
node serves its label) can then still be stored and failed. Consumers call it
through ``dead_letter_call``, so two-argument callbacks keep working.
``on_dead_letter`` too may be called more than once for one dead letter. Since a message may be delivered again,
``on_job`` must be idempotent (claims are, on ``(job_id, attempt)``).

At most ``free_slots`` requests are handed out and not yet settled;
``set_free_slots`` changes that as capacity changes (0 pauses deliveries).
``set_paused_labels`` stops delivering the labels named (those at their
limit on the node) until they are no longer named.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol

from common.queue.codec import decode_job_request
from common.queue.disposition import Disposition
from common.queue.errors import PoisonMessage
from common.rpc import jobs_pb2

OnJob = Callable[[jobs_pb2.JobRequest], Awaitable[Disposition]]
OnDeadLetter = Callable[[str | None, str], Awaitable[None]]  # optionally also ``request=``
DeadLetterCall = Callable[[str | None, str, jobs_pb2.JobRequest | None], Awaitable[None]]

DEFAULT_MAX_ATTEMPTS = 5


class JobConsumer(Protocol):
    """A node's job intake. ``start`` once, ``set_free_slots`` any time, ``stop`` once."""

    async def start(self) -> None:
        """Begin delivering requests of the node's labels to ``on_job``."""

    async def set_free_slots(self, free_slots: int) -> None:
        """Allow at most ``free_slots`` unsettled requests from now on."""

    async def set_paused_labels(self, labels: frozenset[str]) -> None:
        """Deliver no request of ``labels`` (and again those of every label not named)."""

    async def stop(self, grace: float = 30.0) -> None:
        """Stop deliveries; let running ``on_job`` calls finish (up to ``grace`` s) or be redelivered; close."""


def dead_letter_call(on_dead_letter: OnDeadLetter) -> DeadLetterCall:
    """How a consumer calls ``on_dead_letter(job_id, reason, request)``: with ``request=`` when it takes one."""
    try:
        params = inspect.signature(on_dead_letter).parameters.values()
    except (TypeError, ValueError):
        params = ()  # type: ignore[assignment]
    takes_request = any(p.name == "request" or p.kind is p.VAR_KEYWORD for p in params)

    async def call(job_id: str | None, reason: str, request: jobs_pb2.JobRequest | None) -> None:
        if takes_request:
            await on_dead_letter(job_id, reason, request=request)  # type: ignore[call-arg]
        else:
            await on_dead_letter(job_id, reason)

    return call


def request_in(body: bytes) -> jobs_pb2.JobRequest | None:
    """The request a dead letter carries, or None when its body is poison."""
    try:
        return decode_job_request(body)
    except PoisonMessage:
        return None
