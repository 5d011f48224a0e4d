"""Job events: one ``JobEvent`` per applied job or step state change.

Only a change the store actually applied is announced (a transition the
store ignored - stale attempt, duplicate - publishes nothing), so a consumer
never sees a job finish twice. Publishing is after the store write: a lost
publish is logged, never a reason to undo the state change.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from common.queue.errors import QueueError
from common.queue.events import EventPublisher
from common.rpc import jobs_pb2
from orchestrator.store import JobRecord, JobState

log = logging.getLogger(__name__)


class NullEventPublisher:
    """An ``EventPublisher`` with no subscribers (a node started without an event bus)."""

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        return None


def job_event(job: JobRecord, state: JobState, *, attempt: int | None = None, host: str = "",
              reason: str = "", steps: Sequence[jobs_pb2.StepResult] = (),
              log_tail: Sequence[str] = ()) -> jobs_pb2.JobEvent:
    """A job-level event for ``job`` entering ``state``."""
    event = jobs_pb2.JobEvent(
        schema_version=jobs_pb2.SCHEMA_VERSION_1,
        event_id=uuid.uuid4().hex,
        job_id=job.job_id,
        run_id=job.run_id,
        attempt=job.attempt if attempt is None else attempt,
        key=job.key,
        name=job.name or job.key,
        state=state.to_proto(),
        reason=reason,
        host=host or job.host,
    )
    event.checkout.CopyFrom(job.request.checkout)
    event.at.GetCurrentTime()
    event.steps.extend(steps)
    event.log_tail.extend(log_tail)
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
