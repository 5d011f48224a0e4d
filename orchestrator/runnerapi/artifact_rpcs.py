"""RunnerService's artifact calls: a runner uploads its attempt's artifacts and downloads its needs'.

An upload is one artifact per stream; it is stored only when the stream ends
with every checksum right and within the limits (RESOURCE_EXHAUSTED names
the file and the limit). A download serves only artifacts of the attempts
the job was given as inputs (``AssignedJob.artifact_inputs``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from common.artifacts import ArtifactError, ArtifactTooLarge
from common.rpc import jobs_pb2, runner_pb2
from orchestrator.artifacts.store import ArchiveUnavailable, ArtifactNotFound

log = logging.getLogger(__name__)


class ArtifactRpcs:
    """Mixed into ``RunnerServicer`` (which provides ``gateway`` and ``_session``)."""

    async def UploadArtifact(self, request_iterator, context):  # type: ignore[no-untyped-def]
        session = await self._session(context, None)  # type: ignore[attr-defined]
        if session.finished:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the job is complete; it takes no artifacts")
        job = session.job
        ref = (job.job_id, job.attempt)
        first = await anext(aiter(request_iterator), None)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the upload carried no chunk")
        expire = first.expire_seconds
        if not any(spec.name == first.chunk.artifact for spec in job.request.artifacts):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"the job declares no artifact named {first.chunk.artifact!r}")

        async def chunks() -> AsyncIterator[jobs_pb2.ArtifactChunk]:
            async for message in request_iterator:
                if (message.job.job_id, message.job.attempt) != ref:
                    raise ArtifactError("this token belongs to another job attempt")
                session.touch()
                yield message.chunk

        if (first.job.job_id, first.job.attempt) != ref:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token belongs to another job attempt")
        try:
            info = await self.gateway.artifacts.receive(  # type: ignore[attr-defined]
                job.job_id, job.attempt, job.request.key, expire, chunks(), self.gateway.artifact_limits,  # type: ignore[attr-defined]
                first=first.chunk)
        except ArtifactTooLarge as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except ArchiveUnavailable as err:
            log.error("cannot archive an artifact: %s", err, extra={"fields": {"job": job.job_id}})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the orchestrator cannot store artifacts right now")
        except ArtifactError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except OSError as err:
            log.error("cannot store an artifact: %s", err, extra={"fields": {"job": job.job_id}})
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the orchestrator cannot store artifacts right now")
        log.info("artifact stored", extra={"fields": {"job": job.job_id, "attempt": job.attempt,
                                                     "artifact": info.name, "bytes": info.bytes}})
        return runner_pb2.ArtifactReceipt(files=info.files, bytes=info.bytes)

    async def DownloadArtifact(self, request, context):  # type: ignore[no-untyped-def]
        session = await self._session(context, request.job)  # type: ignore[attr-defined]
        source = next((s for s in session.job.artifact_inputs if s.job_key == request.job_key), None)
        if source is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"this job does not need a job {request.job_key!r}")
        try:
            async for chunk in self.gateway.artifacts.chunks(source.job_id, source.attempt,  # type: ignore[attr-defined]
                                                             request.artifact):
                session.touch()
                yield chunk
        except ArtifactNotFound as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except ArchiveUnavailable as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        except ArtifactError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
