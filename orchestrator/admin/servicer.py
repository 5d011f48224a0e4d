"""AdminService over gRPC: operators' (ciadm) view of the whole cluster.

Any node answers for every job: state is in the shared store, and logs are
read wherever they are - this node's files, the log archive, or the node
that runs the attempt (``log_rpcs``, ``orchestrator.logstore.reader``). Who may call what is
checked before a method runs (``auth.AdminAuth`` on each management listener,
``listeners.AdminServer``); ``Submit`` marks each job as the caller's
(``admission``); no answer carries a clone URL's credentials.

Errors are gRPC status codes with one-line messages:

    UNAUTHENTICATED      no token, or one that is not valid, expired or revoked (auth.py)
    PERMISSION_DENIED    the caller's role is below the method's (auth.py)
    NOT_FOUND            unknown job, unknown host, no log on this node
    INVALID_ARGUMENT     a request that cannot be queued (common.validation names the field)
    FAILED_PRECONDITION  retry of a job that has not finished, cancel of one that has
    UNAVAILABLE          the store or the queue cannot be reached
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.queue.errors import InvalidMessage, QueueError
from common.cloneurl import redact_url
from common.queue.topology import NEW_WORK
from common.rpc import admin_pb2, admin_pb2_grpc, jobs_pb2
from common.validation import CloneRules, RequestInvalid, check_requests
from orchestrator.admin.admission import admit
from orchestrator.admin.artifact_rpcs import ArtifactAdminRpcs
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.admin.auth import current_principal
from orchestrator.admin.secrets import SecretRpcs
from orchestrator.admin.token_rpcs import TokenRpcs
from orchestrator.admin.log_rpcs import LogRpcs
from orchestrator.logstore.reader import LogReader
from orchestrator.logstore.retention import Retention
from orchestrator.node.cancel import cancel_job
from orchestrator.node.events import job_event, new_event_id
from orchestrator.node.outbox import Outbox
from orchestrator.node.requeue import retry_job
from orchestrator.operators import OperatorTokenError, OperatorTokens
from orchestrator.secrets import SecretBroker
from orchestrator.store import (
    AttemptRecord,
    HostNotFound,
    HostRecord,
    JobFilter,
    JobNotFound,
    JobRecord,
    JobState,
    OutboxMessage,
    OutboxRequest,
    RetryNotAllowed,
    Store,
    StoreError,
)

log = logging.getLogger(__name__)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class LocalNode(Protocol):
    """What the servicer asks of the node it runs in."""

    host: str

    def cancel_local(self, job_id: str, reason: str) -> bool: ...

    def set_draining(self, draining: bool) -> None: ...

    @property
    def driver_name(self) -> str: ...


class AdminError(Exception):
    """Carries the gRPC status a request ends with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _ts(value) -> Timestamp:  # type: ignore[no-untyped-def]
    stamp = Timestamp()
    if value is not None:
        stamp.FromDatetime(value)
    return stamp


def host_info(host: HostRecord) -> admin_pb2.HostInfo:
    return admin_pb2.HostInfo(name=host.name, labels=list(host.labels), capacity=host.capacity,
                              running=host.running, heartbeat_age_seconds=host.heartbeat_age,
                              draining=host.draining, alive=host.alive)


def attempt_info(attempt: AttemptRecord) -> admin_pb2.AttemptInfo:
    info = admin_pb2.AttemptInfo(attempt=attempt.attempt, host=attempt.host, state=attempt.state.to_proto(),
                                 reason=attempt.reason, queued_at=_ts(attempt.queued_at))
    if attempt.started_at is not None:
        info.started_at.CopyFrom(_ts(attempt.started_at))
    if attempt.finished_at is not None:
        info.finished_at.CopyFrom(_ts(attempt.finished_at))
    return info


class AdminServicer(ArtifactAdminRpcs, LogRpcs, TokenRpcs, SecretRpcs, admin_pb2_grpc.AdminServiceServicer):
    """AdminService on one node; see the module docstring (log calls: log_rpcs.py, token calls:
    token_rpcs.py, secret calls: secrets.py).

    ``trusted_submit`` (``admin.trusted_submit``) lets an admin-role caller submit trusted jobs;
    ``rules`` says which clone URLs Submit takes.
    """

    def __init__(self, store: Store, outbox: Outbox, logs: LogReader, node: LocalNode,
                 trusted_submit: bool = False, secrets: SecretBroker | None = None,
                 rules: CloneRules = CloneRules(), retention: Retention | None = None,
                 artifacts: ArtifactStore | None = None) -> None:
        self.secrets = secrets
        self.artifacts = artifacts or ArtifactStore(logs.logstore.root)
        self.store = store
        self.rules = rules  # which clone URLs Submit takes
        self.outbox = outbox  # the node's: events and job requests leave in order with the node's own
        self.logs = logs
        self.retention = retention
        self.node = node
        self.trusted_submit = trusted_submit
        self.tokens = OperatorTokens(store)

    async def _call(self, context: grpc.aio.ServicerContext, coro):  # type: ignore[no-untyped-def]
        try:
            return await coro
        except AdminError as err:
            await context.abort(err.code, err.message)
        except (JobNotFound, HostNotFound) as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except RetryNotAllowed as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        except (InvalidMessage, RequestInvalid, OperatorTokenError) as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except (StoreError, QueueError) as err:
            log.error("admin request failed: %s", err)
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err).splitlines()[0])

    async def job_info(self, job: JobRecord) -> admin_pb2.JobInfo:
        info = admin_pb2.JobInfo(
            job_id=job.job_id, run_id=job.run_id, key=job.key, name=job.name or job.key, runs_on=job.runs_on,
            state=job.state.to_proto(), attempt=job.attempt, host=job.host, reason=job.reason,
            created_at=_ts(job.created_at), updated_at=_ts(job.updated_at), needs=list(job.request.needs),
            source=job.request.source, submitted_by=job.request.submitted_by,
        )
        info.checkout.CopyFrom(job.request.checkout)
        info.checkout.clone_url = redact_url(info.checkout.clone_url)
        attempts = await self.store.attempts(job.job_id)
        info.attempts.extend(attempt_info(a) for a in attempts)
        current = next((a for a in attempts if a.attempt == job.attempt), None)
        if current is not None:
            if current.started_at is not None:
                info.started_at.CopyFrom(_ts(current.started_at))
            if current.finished_at is not None:
                info.finished_at.CopyFrom(_ts(current.finished_at))
        info.steps.extend(step.to_proto() for step in await self.store.steps(job.job_id, job.attempt))
        info.ignored_transitions = await self.store.ignored_transitions()
        if job.host == self.node.host:
            info.driver = self.node.driver_name
        return info

    async def _admit(self, requests) -> list[jobs_pb2.JobRequest]:  # type: ignore[no-untyped-def]
        """The requests as this caller's admin jobs (``admission``); their clone credentials stored apart."""
        admitted = [admit(job, current_principal(), self.trusted_submit) for job in requests]
        for one in admitted:
            if one.userinfo:
                await self.store.put_clone_credentials(one.request.job_id, one.userinfo)
        return [one.request for one in admitted]

    async def _get(self, job_id: str) -> JobRecord:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    # -- RPCs -------------------------------------------------------------------------
    async def Submit(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.SubmitResponse:
            check_requests(request.jobs, self.rules)  # all of it, before anything is stored
            jobs = await self._admit(request.jobs)
            stored = [await self.store.submit(job) for job in jobs]
            # A job submitted again that already finished is not sent round the queue again. Each
            # queued one's event, then its request, through the outbox: durable once this returns,
            # and a node's `provisioning` event cannot overtake the `queued` one.
            messages: list[OutboxMessage] = []
            for job in stored:
                if job.state is JobState.QUEUED:
                    messages += [job_event(job, job.state), OutboxRequest(new_event_id(), job.request, NEW_WORK)]
            await self.outbox.send(messages)
            return admin_pb2.SubmitResponse(jobs=[await self.job_info(job) for job in stored])
        return await self._call(context, go())

    async def Get(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.JobInfo:
            return await self.job_info(await self._get(request.job_id))
        return await self._call(context, go())

    async def List(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.ListJobsResponse:
            limit = request.limit or DEFAULT_LIMIT
            if not 0 < limit <= MAX_LIMIT:
                raise AdminError(grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 1..{MAX_LIMIT}")
            state = JobState.from_proto(request.state) if request.state else None
            jobs = await self.store.list_jobs(JobFilter(
                repo=request.repo or None, ref=request.ref or None, state=state, host=request.host or None,
                run_id=request.run_id or None, limit=limit))
            return admin_pb2.ListJobsResponse(jobs=[await self.job_info(job) for job in jobs])
        return await self._call(context, go())

    async def Cancel(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.JobInfo:
            reason = request.reason or "cancelled by an operator"
            before = await self._get(request.job_id)
            job = before if before.terminal else await cancel_job(
                self.store, self.outbox, self.node, request.job_id, reason)
            if before.terminal or job.state is not JobState.CANCELLED:
                # Said as a refusal (exit 1 in ciadm), never as if this call had cancelled it.
                raise AdminError(grpc.StatusCode.FAILED_PRECONDITION,
                                 f"job {job.job_id} already ended {job.state.name.lower()}; nothing to cancel")
            return await self.job_info(job)
        return await self._call(context, go())

    async def Retry(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.JobInfo:
            job = await retry_job(self.store, self.outbox, request.job_id)
            return await self.job_info(job)
        return await self._call(context, go())

    async def Hosts(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.HostsResponse:
            return admin_pb2.HostsResponse(hosts=[host_info(h) for h in await self.store.list_hosts()])
        return await self._call(context, go())

    async def Drain(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.HostInfo:
            name = request.host or self.node.host
            host = await self.store.set_draining(name, not request.undrain)
            if name == self.node.host:
                self.node.set_draining(host.draining)
            return host_info(host)
        return await self._call(context, go())


def admin_servicer_factory(node) -> AdminServicer:  # type: ignore[no-untyped-def]
    """``NodeParts.admin``: the AdminService of ``node`` (the node serves it on its management listeners)."""
    parts = node.parts
    # The node's outbox: the admin's events and requests keep their order with the node's own.
    logs = parts.logs
    reader = logs.reader if logs is not None else LogReader(parts.store, parts.gateway.logstore, node.host)
    return AdminServicer(parts.store, node.outbox, reader, node,
                         trusted_submit=node.settings.admin.trusted_submit, secrets=parts.secrets,
                         rules=CloneRules(allow_local=node.settings.allow_local_checkouts),
                         retention=logs.retention if logs is not None else None,
                         artifacts=parts.gateway.artifacts)
