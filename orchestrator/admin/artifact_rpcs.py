"""AdminService's artifact calls (read role): ListArtifacts and DownloadArtifact.

Mixed into ``AdminServicer``, which provides ``artifacts`` (the node's
``ArtifactStore``), ``_get`` and ``_call``. Attempt 0 means the job's current one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from common.artifacts import ArtifactError
from common.rpc import admin_pb2, jobs_pb2
from orchestrator.artifacts.store import ArtifactNotFound, ArtifactStore
from orchestrator.store import JobNotFound, StoreError


class ArtifactAdminRpcs:
    """The artifact methods of ``AdminServicer``."""

    artifacts: ArtifactStore

    async def _call(self, context, coro): ...  # type: ignore[no-untyped-def]  # provided by AdminServicer
    async def _get(self, job_id: str): ...  # type: ignore[no-untyped-def]  # provided by AdminServicer

    async def _attempt(self, job_id: str, attempt: int) -> int:
        job = await self._get(job_id)
        if attempt < 0 or attempt > job.attempt:
            raise ArtifactNotFound(f"job {job_id} has no attempt {attempt}")
        return attempt or job.attempt

    async def ListArtifacts(self, request, context):  # type: ignore[no-untyped-def]
        async def go() -> admin_pb2.ListArtifactsResponse:
            attempt = await self._attempt(request.job_id, request.attempt)
            return admin_pb2.ListArtifactsResponse(artifacts=await self.artifacts.list(request.job_id, attempt))
        try:
            return await self._call(context, go())
        except ArtifactNotFound as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except ArtifactError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))

    async def DownloadArtifact(self, request, context) -> AsyncIterator[jobs_pb2.ArtifactChunk]:  # type: ignore[no-untyped-def, override]
        try:
            attempt = await self._attempt(request.job_id, request.attempt)
            async for chunk in self.artifacts.chunks(request.job_id, attempt, request.name):
                yield chunk
        except (ArtifactNotFound, JobNotFound) as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except ArtifactError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except StoreError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err).splitlines()[0])
