"""What the dashboard's buttons do: cancel a job, re-run a finished one.

Both act the way AdminService's Cancel and Retry do. ``StoreActions`` (the
single node) acts on the store through the node's outbox: the cancellation
is a conditional transition announced once (here when no node had claimed
the attempt, else by the node holding it), a re-run starts attempt N+1 and
stores its ``queued`` event and job request with it, so both reach the queue
even if the broker is away. ``AdminActions`` (the integration's dashboard in
a cluster, which runs no node) asks an orchestrator's AdminService, with the
integration's own operator token (``admin.*``), after the dashboard has
checked the signed-in operator's role.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ciadm.client import AdminClient, AdminError, AdminRefused
from ciadm.client import JobNotFound as AdminJobNotFound
from ciadm.target import Target
from common.errors import SolsticeError
from common.rpc import admin_pb2
from orchestrator.node.cancel import CancelTarget, cancel_job
from orchestrator.node.outbox import Outbox
from orchestrator.node.requeue import retry_job
from orchestrator.operators import Principal
from orchestrator.store import JobNotFound, JobRecord, JobState, RetryNotAllowed, Store

log = logging.getLogger(__name__)


class ActionRefused(SolsticeError):
    """The action does not apply (the job ended, or has not); the message says why."""


class JobActions(Protocol):
    async def cancel(self, job_id: str, principal: Principal) -> object:
        """Cancel the job's current attempt; ``ActionRefused`` when it already ended."""
        ...

    async def retry(self, job_id: str, principal: Principal) -> object:
        """Start a new attempt of a finished job; ``ActionRefused`` when it has not finished."""
        ...


class StoreActions:
    """``JobActions`` through the store and the node's outbox (the single node)."""

    def __init__(self, store: Store, outbox: Outbox, node: CancelTarget) -> None:
        self.store = store
        self.outbox = outbox
        self.node = node

    async def cancel(self, job_id: str, principal: Principal) -> JobRecord:
        reason = f"cancelled by {principal.name} from the dashboard"
        try:
            before = await self.store.get_job(job_id)
            if before is None:
                raise JobNotFound(job_id)
            job = before if before.terminal else await cancel_job(self.store, self.outbox, self.node, job_id, reason)
        except JobNotFound:
            raise ActionRefused(f"there is no job {job_id}") from None
        if before.terminal or job.state is not JobState.CANCELLED:
            raise ActionRefused(f"job {job_id} already ended {job.state.name.lower()}; nothing to cancel")
        log.info("job cancelled from the dashboard",
                 extra={"fields": {"job": job_id, "attempt": job.attempt, "operator": principal.name}})
        return job

    async def retry(self, job_id: str, principal: Principal) -> JobRecord:
        try:
            job = await retry_job(self.store, self.outbox, job_id)
        except JobNotFound:
            raise ActionRefused(f"there is no job {job_id}") from None
        except RetryNotAllowed as err:
            raise ActionRefused(str(err)) from None
        log.info("job re-run from the dashboard",
                 extra={"fields": {"job": job_id, "attempt": job.attempt, "operator": principal.name}})
        return job


class AdminActions:
    """``JobActions`` through an orchestrator's AdminService (the integration's dashboard in a cluster)."""

    def __init__(self, target: Target, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout

    async def cancel(self, job_id: str, principal: Principal) -> None:
        reason = f"cancelled by {principal.name} from the dashboard"
        await self._call(lambda admin: admin.cancel(job_id, reason), job_id)
        log.info("job cancelled from the dashboard", extra={"fields": {"job": job_id, "operator": principal.name}})

    async def retry(self, job_id: str, principal: Principal) -> None:
        await self._call(lambda admin: admin.retry(job_id), job_id)
        log.info("job re-run from the dashboard", extra={"fields": {"job": job_id, "operator": principal.name}})

    async def _call(self, call: Callable[[AdminClient], Awaitable[admin_pb2.JobInfo]],
                    job_id: str) -> admin_pb2.JobInfo:
        try:
            async with AdminClient(self.target, self.timeout) as admin:
                return await call(admin)
        except AdminJobNotFound:
            raise ActionRefused(f"there is no job {job_id}") from None
        except AdminRefused as err:  # the job's state: already ended, not finished yet
            raise ActionRefused(str(err)) from None
        except AdminError as err:  # unreachable, or the integration's token refused
            raise ActionRefused(f"the orchestrator cannot be asked right now: {err}") from None
