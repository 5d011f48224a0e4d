"""AdminService over gRPC: operators' (ciadm) view of the whole cluster.

Any node answers for every job: state is in the shared store. Job logs are
kept by the node that ran the attempt, so ``TailLogs`` answers on that node
(``JobInfo.host`` names it) and says so elsewhere. The service takes no
token: serve it on localhost or a management network (docs/orchestrator.md).

Errors are gRPC status codes with one-line messages:

    NOT_FOUND            unknown job, unknown host, no log on this node
    INVALID_ARGUMENT     a request that cannot be queued (no job_id, bad label)
    FAILED_PRECONDITION  retry of a job that has not finished
    UNAVAILABLE          the store or the queue cannot be reached
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.queue.errors import InvalidMessage, QueueError
from common.queue.topology import NEW_WORK
from common.rpc import admin_pb2, admin_pb2_grpc
from orchestrator.logstore import LogNotFound, LogStore, LogStoreError
from orchestrator.node.cancel import cancel_job
from orchestrator.node.events import job_event, new_event_id
from orchestrator.node.outbox import Outbox
from orchestrator.node.requeue import retry_job
from orchestrator.store import (
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


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """AdminService on one node; see the module docstring."""

    def __init__(self, store: Store, outbox: Outbox, logstore: LogStore, node: LocalNode,
                 log_poll: float = 0.5) -> None:
        self.store = store
        self.outbox = outbox  # the node's: events and job requests leave in order with the node's own
        self.logstore = logstore
        self.node = node
        self.log_poll = log_poll

    async def _call(self, context: grpc.aio.ServicerContext, coro):  # type: ignore[no-untyped-def]
        try:
            return await coro
        except AdminError as err:
            await context.abort(err.code, err.message)
        except (JobNotFound, HostNotFound) as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except RetryNotAllowed as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        except InvalidMessage as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except (StoreError, QueueError) as err:
            log.error("admin request failed: %s", err)
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err).splitlines()[0])

    async def job_info(self, job: JobRecord) -> admin_pb2.JobInfo:
        info = admin_pb2.JobInfo(
            job_id=job.job_id, run_id=job.run_id, key=job.key, name=job.name or job.key, runs_on=job.runs_on,
            state=job.state.to_proto(), attempt=job.attempt, host=job.host, reason=job.reason,
            created_at=_ts(job.created_at), updated_at=_ts(job.updated_at), needs=list(job.request.needs),
        )
        info.checkout.CopyFrom(job.request.checkout)
        attempts = await self.store.attempts(job.job_id)
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

    async def _get(self, job_id: str) -> JobRecord:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    # -- RPCs -------------------------------------------------------------------------
    async def Submit(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.SubmitResponse:
            for job in request.jobs:
                if not job.job_id or not job.runs_on:
                    raise AdminError(grpc.StatusCode.INVALID_ARGUMENT, "every job needs a job_id and a runs_on label")
            stored = [await self.store.submit(job) for job in request.jobs]
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
            job = await cancel_job(self.store, self.outbox, self.node, request.job_id, reason)
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

    async def TailLogs(self, request, context) -> AsyncIterator[admin_pb2.LogChunk]:  # type: ignore[no-untyped-def, override]
        job = await self._call(context, self._get(request.job_id))
        joblog = None
        while joblog is None:
            try:
                joblog = await self.logstore.open(job.job_id, job.attempt, create=False)
            except LogNotFound:
                if job.host and job.host != self.node.host:
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"no log of job {job.job_id} on "
                                        f"{self.node.host} (attempt {job.attempt} ran on {job.host})")
                if job.terminal:
                    # Ended here (or before any host took it) without a line: no log is stored.
                    yield admin_pb2.LogChunk(end=True)
                    return
                if not request.follow:
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"no log of job {job.job_id} yet")
                await asyncio.sleep(self.log_poll)  # queued or booting: its log appears when the runner calls in
                job = await self._call(context, self._get(request.job_id))
            except LogStoreError as err:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        start = max(1, request.from_sequence)
        lines = joblog.follow(start) if request.follow else _iterate(await joblog.read_all(), start)
        async for line in lines:
            chunk = admin_pb2.LogChunk(sequence=line.sequence, step=line.step, stream=line.stream,
                                       content=line.content, continuation=line.continuation)
            chunk.at.FromNanoseconds(int(line.at * 1e9))
            yield chunk
        yield admin_pb2.LogChunk(end=True)


async def _iterate(lines, start: int):  # type: ignore[no-untyped-def]
    for line in lines:
        if line.sequence >= start:
            yield line


def admin_servicer_factory(node):  # type: ignore[no-untyped-def]
    """``NodeParts.admin``: adds AdminService for ``node`` to the node's gRPC server."""

    def add(server: grpc.aio.Server) -> None:
        parts = node.parts
        # The node's outbox: the admin's events keep their order with the node's own.
        servicer = AdminServicer(parts.store, node.outbox, parts.gateway.logstore, node)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)

    return add
