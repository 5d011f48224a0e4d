"""RunnerService over gRPC: authenticate every call, then act on its session.

Refusals happen before anything is touched: no token or a bad/expired one is
UNAUTHENTICATED; a good token naming another job attempt, or an attempt no
longer assigned here, is PERMISSION_DENIED. A runner whose version this
orchestrator does not speak (common/version.py) is FAILED_PRECONDITION on
GetJob, and its attempt ends errored with the same reason.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from common import metrics
from common.cloneurl import with_userinfo
from common.errors import SolsticeError
from common.logbatch import BatchError, check, output_bytes
from common.rpc import jobs_pb2, runner_pb2, runner_pb2_grpc
from common.tokens import TokenClaims, TokenError, TokenExpired
from common.version import RunnerRefused, check_runner
from orchestrator.caches.scope import cache_scope
from orchestrator.logstore import LogClosed, LogGap, LogStoreError
from orchestrator.runnerapi.artifact_rpcs import ArtifactRpcs
from orchestrator.runnerapi.cache_rpcs import CacheRpcs
from orchestrator.runnerapi.gateway import TERMINAL, RunnerGateway, RunnerSession

log = logging.getLogger(__name__)

# Past a job's log limit the runner still sends its truncation line and the
# step banners and results; more than this beyond the limit is refused.
LOG_LIMIT_SLACK = 1 << 20


class RunnerServicer(ArtifactRpcs, CacheRpcs, runner_pb2_grpc.RunnerServiceServicer):
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
        try:
            check_runner(request.runner_version, request.image)
        except RunnerRefused as err:
            await session.refuse(str(err))
            log.warning("runner refused", extra={"fields": {"job": session.job.job_id, "reason": str(err)}})
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        job = session.job
        req = job.request
        reply = runner_pb2.RunnerJob(
            name=req.name or req.key,
            timeout_seconds=job.timeout_seconds,
            shell=list(job.shell),
            kill_grace_seconds=job.kill_grace_seconds,
            heartbeat_interval_seconds=self.gateway.heartbeat_interval,
            log_limit_bytes=job.log_limit_bytes,
            log_limit_fails=job.log_limit_fails,
            offline_limit_seconds=self.gateway.runner_offline_limit,
        )
        reply.job.job_id, reply.job.attempt = job.job_id, job.attempt
        reply.checkout.CopyFrom(req.checkout)
        # The credentials an operator's clone URL had: stored apart, given to this runner only.
        reply.checkout.clone_url = with_userinfo(req.checkout.clone_url, job.clone_userinfo)
        reply.steps.extend(req.steps)
        reply.env.update(req.env)
        reply.artifacts.extend(req.artifacts)
        limits = self.gateway.artifact_limits
        reply.artifact_max_file_bytes, reply.artifact_max_job_bytes = limits.max_file_bytes, limits.max_job_bytes
        reply.artifact_inputs.extend(await self.gateway.artifacts.inputs(job.artifact_inputs))
        mode = self.gateway.cache_mode(job.job_id, job.attempt)
        if req.caches and mode:
            reply.caches.extend(req.caches)
            reply.cache_mode = mode
            reply.cache_writable = cache_scope(req).writes is not None
            reply.cache_max_bytes = self.gateway.cache_max_bytes
            reply.runs_on = req.runs_on
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
                if batch.first_sequence + lines - 1 > joblog.highest_sequence:  # not a resend
                    await self._count_log(session, batch, context)
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

    async def _count_log(self, session: RunnerSession, batch: runner_pb2.LogBatch,
                         context: grpc.aio.ServicerContext) -> None:
        """Hold a runner to its log limit: one that ships past it (a job that took over
        its VM's runner) ends the job ``failed`` instead of filling the node's disk."""
        session.logged_bytes += output_bytes(batch)
        limit = session.job.log_limit_bytes
        if limit and session.logged_bytes > limit + LOG_LIMIT_SLACK:
            reason = f"the runner sent more log than the job's limit of {limit} bytes"
            await session.finish(jobs_pb2.JOB_STATE_FAILED, reason)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)

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
