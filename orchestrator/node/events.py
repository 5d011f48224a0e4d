"""Job events: one ``JobEvent`` per applied job or step state change.

Only a change the store actually applied is announced (a transition the
store ignored - stale attempt, duplicate - publishes nothing), so a consumer
never sees a job finish twice: whoever applies a change announces it, and
nobody else. Publishing is after the store write: a lost publish is logged,
never a reason to undo the state change. Attempts announce through the
node's ``Outbox`` (outbox.py), which stores each event with the change it
reports and publishes it in order.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence

from common.junit import TestSummary
from common.queue.errors import QueueError
from common.queue.events import EventPublisher
from common.rpc import jobs_pb2
from orchestrator.node.outbox import Outbox
from orchestrator.store import JobRecord, JobState, Store

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
              log_tail: Sequence[str] = (), tests: TestSummary | None = None) -> jobs_pb2.JobEvent:
    """A job-level event for ``job`` entering ``state`` (``tests``: what its reports said)."""
    event = _event(job.request, job.attempt if attempt is None else attempt, state, host or job.host, reason)
    event.steps.extend(steps)
    event.log_tail.extend(log_tail)
    if tests is not None:
        event.tests.CopyFrom(tests.to_proto())
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


async def announce_applied(publisher: EventPublisher, write: Callable[[Sequence[jobs_pb2.JobEvent]], Awaitable[bool]],
                           *events: jobs_pb2.JobEvent) -> bool:
    """Apply a store write and announce ``events`` if it applied; True when it did.

    ``write(stored)`` makes the change and, in the same statement or
    transaction, puts ``stored`` in the store's outbox (``Store.claim``,
    ``record_step``, ``transition_announced`` take them). Through a durable
    ``Outbox`` ``stored`` is ``events``, so no crash can separate a
    change from its events and no extra round trip stores them; otherwise it
    is empty and the events are announced right after the write.
    """
    outbox = publisher if isinstance(publisher, Outbox) and publisher.durable is not None else None
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
