"""What the dashboard's buttons do: cancel a job, re-run a finished one.

Both act the way AdminService's Cancel and Retry do: the cancellation is a
conditional transition in the store, announced once (here when no node had
claimed the attempt, else by the node holding it: at once when that is the
node this process runs, through its store watcher when it is another); a
re-run starts attempt N+1 in the store, announces ``queued`` and publishes
the job request.
"""

from __future__ import annotations

import logging
from typing import Protocol

from common.errors import SolsticeError
from common.queue.events import EventPublisher
from common.queue.publisher import JobPublisher
from orchestrator.node.cancel import CancelTarget, cancel_job
from orchestrator.node.events import announce, job_event, settle
from orchestrator.operators import Principal
from orchestrator.store import JobNotFound, JobRecord, JobState, RetryNotAllowed, Store

log = logging.getLogger(__name__)


class ActionRefused(SolsticeError):
    """The action does not apply (the job ended, or has not); the message says why."""


class JobActions(Protocol):
    async def cancel(self, job_id: str, principal: Principal) -> JobRecord:
        """Cancel the job's current attempt; ``ActionRefused`` when it already ended."""
        ...

    async def retry(self, job_id: str, principal: Principal) -> JobRecord:
        """Start a new attempt of a finished job; ``ActionRefused`` when it has not finished."""
        ...


class _Remote:
    """The cancel target of a process that runs no node (a multi-host dashboard): the holder
    of the attempt sees the cancellation in the store and stops it."""

    host = ""

    def cancel_local(self, job_id: str, reason: str) -> bool:
        return False


class StoreActions:
    """``JobActions`` through the store, the job queue and the event publisher of this process."""

    def __init__(self, store: Store, publisher: JobPublisher, events: EventPublisher,
                 node: CancelTarget | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.events = events
        self.node: CancelTarget = node or _Remote()

    async def cancel(self, job_id: str, principal: Principal) -> JobRecord:
        reason = f"cancelled by {principal.name} from the dashboard"
        try:
            before = await self.store.get_job(job_id)
            if before is None:
                raise JobNotFound(job_id)
            job = before if before.terminal else await cancel_job(self.store, self.events, self.node, job_id, reason)
        except JobNotFound:
            raise ActionRefused(f"there is no job {job_id}") from None
        if before.terminal or job.state is not JobState.CANCELLED:
            raise ActionRefused(f"job {job_id} already ended {job.state.name.lower()}; nothing to cancel")
        log.info("job cancelled from the dashboard",
                 extra={"fields": {"job": job_id, "attempt": job.attempt, "operator": principal.name}})
        return job

    async def retry(self, job_id: str, principal: Principal) -> JobRecord:
        try:
            job = await self.store.retry(job_id)
        except JobNotFound:
            raise ActionRefused(f"there is no job {job_id}") from None
        except RetryNotAllowed as err:
            raise ActionRefused(str(err)) from None
        # `queued` before the request: the node that takes it must not overtake the event.
        await announce(self.events, job_event(job, JobState.QUEUED))
        await settle(self.events)
        await self.publisher.publish([job.request])
        log.info("job re-run from the dashboard",
                 extra={"fields": {"job": job_id, "attempt": job.attempt, "operator": principal.name}})
        return job
