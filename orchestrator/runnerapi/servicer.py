"""RunnerService over gRPC: authenticate every call, then act on its session.

Refusals happen before anything is touched: no token or a bad/expired one is
UNAUTHENTICATED; a good token naming another job attempt, or an attempt no
longer assigned here, is PERMISSION_DENIED.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from common import metrics
from common.cloneurl import with_userinfo
from common.errors import SolsticeError
from common.logbatch import BatchError, check
from common.rpc import jobs_pb2, runner_pb2, runner_pb2_grpc
from common.tokens import TokenClaims, TokenError, TokenExpired
from orchestrator.logstore import LogClosed, LogGap, LogStoreError
from orchestrator.runnerapi.gateway import TERMINAL, RunnerGateway, RunnerSession

log = logging.getLogger(__name__)


class RunnerServicer(runner_pb2_grpc.RunnerServiceServicer):
    """The RunnerService implementation for one gateway."""

    def __init__(self, gateway: RunnerGateway) -> None:
        self.gateway = gateway

    async def _claims(self, context: grpc.aio.ServicerContext) -> TokenClaims:
        auth = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                auth = value if isinstance(value, str) else value.decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>'")
        try:
            return self.gateway.verify(token.strip())
        except TokenExpired:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the job token has expired")
        except TokenError:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the job token is not valid")
        raise AssertionError("unreachable: abort raises")

    async def _session(
        self, context: grpc.aio.ServicerContext, ref: runner_pb2.JobRef | None
    ) -> RunnerSession:
        claims = await self._claims(context)
        if ref is not None and (ref.job_id, ref.attempt) != (claims.job_id, claims.attempt):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token belongs to another job attempt")
        session = self.gateway.session(claims.job_id, claims.attempt)
        if session is None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"job {claims.job_id} attempt {claims.attempt} is not assigned here",
            )
        assert session is not None
        session.touch()
        return session

    async def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        session = await self._session(context, request.job)
        job = session.job
        req = job.request
        reply = runner_pb2.RunnerJob(
            name=req.name or req.key,
            timeout_seconds=job.timeout_seconds,
            shell=list(job.shell),
            kill_grace_seconds=job.kill_grace_seconds,
            heartbeat_interval_seconds=self.gateway.heartbeat_interval,
        )
        reply.job.job_id, reply.job.attempt = job.job_id, job.attempt
        reply.checkout.CopyFrom(req.checkout)
        # The credentials an operator's clone URL had: stored apart, given to this runner only.
        reply.checkout.clone_url = with_userinfo(req.checkout.clone_url, job.clone_userinfo)
        reply.steps.extend(req.steps)
        reply.env.update(req.env)
        try:
            reply.secrets.update(await session.secrets_for_runner())
        except SolsticeError as err:  # no secret leaves without its audit record
            log.error("cannot record the delivery of secrets: %s", err, extra={"fields": {"job": job.job_id}})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the orchestrator cannot hand out the job's secrets "
                                "right now; try again")
        log.info("runner fetched its job", extra={"fields": {"job": job.job_id, "attempt": job.attempt,
                                                            "host": request.hostname}})
        return reply

    async def StreamLogs(self, request_iterator, context) -> AsyncIterator[runner_pb2.LogAck]:  # type: ignore[no-untyped-def, override]
        session = await self._session(context, None)
        if session.finished:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the job is complete; its log is closed")
        joblog = await session.log()
        session.log_streams += 1
        if session.log_streams > 1:
            metrics.runner_reconnected()
        yield runner_pb2.LogAck(durable_sequence=joblog.highest_sequence)
        ref = (session.job.job_id, session.job.attempt)
        async for batch in request_iterator:
            if (batch.job.job_id, batch.job.attempt) != ref:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token belongs to another job attempt")
            try:
                lines = check(batch)
                durable = await joblog.append(batch)
                metrics.log_stored(lines, sum(len(run.data) for run in batch.runs))
            except BatchError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            except LogGap as err:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
            except LogClosed as err:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
            except LogStoreError as err:
                log.error("cannot store log batch: %s", err)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the orchestrator cannot store logs right now")
            session.touch()
            yield runner_pb2.LogAck(durable_sequence=durable)

    async def ReportStep(self, request, context):  # type: ignore[no-untyped-def]
        session = await self._session(context, request.job)
        if session.finished:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the job is already complete")
        await session.record_step(request.step)
        return runner_pb2.StepReportReply()

    async def Heartbeat(self, request, context):  # type: ignore[no-untyped-def]
        session = await self._session(context, request.job)
        reason = session.cancel_reason
        return runner_pb2.HeartbeatReply(cancel=reason is not None, reason=reason or "")

    async def Complete(self, request, context):  # type: ignore[no-untyped-def]
        session = await self._session(context, request.job)
        if request.state not in TERMINAL:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Complete needs a final job state")
        if not session.finished:
            # A runner that logged nothing has nothing to check, and opening its log here
            # would create one that ``finish`` otherwise never stores.
            durable = (await session.log()).highest_sequence if request.last_sequence > 0 else 0
            if request.last_sequence > durable:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"log lines up to {request.last_sequence} are not all stored "
                    f"(have {durable}); send them first",
                )
            outcome = await session.finish(request.state, request.reason, list(request.steps))
            log.info("runner completed", extra={"fields": {
                "job": session.job.job_id, "attempt": session.job.attempt,
                "state": jobs_pb2.JobState.Name(outcome.state)}})
        return runner_pb2.CompleteReply()
