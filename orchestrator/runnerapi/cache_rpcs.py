"""RunnerService's cache calls: RestoreCache and SaveCache.

The scope (repository, branches read, branch written) comes from the job's
request (``orchestrator.caches.cache_scope``), never from the runner: a
runner can only name a cache its job declares, and a job that may not write
(a fork's pull request) is refused PERMISSION_DENIED on SaveCache.
In "copy" mode the files travel over this channel; in "disk" mode (bhyve)
they are on the VM's cache disk and only the keys travel
(``gateway.disk_caches`` does the ZFS side).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from common.artifacts import ArtifactError, ArtifactTooLarge
from common.rpc import jobs_pb2, runner_pb2
from common.workflow.cachekeys import KEY_RE
from orchestrator.caches.dirstore import CacheError
from orchestrator.caches.scope import cache_scope

log = logging.getLogger(__name__)


class CacheRpcs:
    """Mixed into ``RunnerServicer`` (which provides ``gateway`` and ``_session``)."""

    async def _cache_session(self, context, ref, name: str):  # type: ignore[no-untyped-def]
        session = await self._session(context, ref)  # type: ignore[attr-defined]
        if not any(spec.name == name for spec in session.job.request.caches):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the job declares no cache named {name!r}")
        if self.gateway.cache_mode(session.job.job_id, session.job.attempt) == "":  # type: ignore[attr-defined]
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this node keeps no caches")
        return session

    async def RestoreCache(self, request, context) -> AsyncIterator[runner_pb2.CacheMessage]:  # type: ignore[no-untyped-def, override]
        session = await self._cache_session(context, request.job, request.name)
        gateway = self.gateway  # type: ignore[attr-defined]
        scope = cache_scope(session.job.request)
        if gateway.cache_mode(session.job.job_id, session.job.attempt) == "disk":
            matched = gateway.disk_caches.restored(session.job.job_id, session.job.attempt, request.name)
            yield runner_pb2.CacheMessage(name=request.name, key=request.key, matched_key=matched,
                                          exact=bool(matched) and matched == request.key)
            return
        entry = await gateway.caches.lookup(scope, request.name, request.key, tuple(request.restore_keys))
        matched = entry.key if entry is not None else ""
        yield runner_pb2.CacheMessage(name=request.name, key=request.key, matched_key=matched,
                                      exact=bool(matched) and matched == request.key)
        if entry is None:
            return
        async for chunk in gateway.caches.chunks(entry):
            session.touch()
            yield runner_pb2.CacheMessage(chunk=chunk)

    async def SaveCache(self, request_iterator, context):  # type: ignore[no-untyped-def]
        first = await anext(aiter(request_iterator), None)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the save carried no header")
        session = await self._cache_session(context, first.job, first.name)
        gateway = self.gateway  # type: ignore[attr-defined]
        scope = cache_scope(session.job.request)
        if scope.writes is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "this job may not save caches (a fork's pull request only restores them)")
        if not KEY_RE.fullmatch(first.key):  # it names a directory or goes into a zfs property
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cache key {first.key[:80]!r} is not valid")
        if gateway.cache_mode(session.job.job_id, session.job.attempt) == "disk":
            saved = gateway.disk_caches.mark_save(session.job.job_id, session.job.attempt, first.name, first.key)
            return runner_pb2.CacheReceipt(saved=saved)

        if await gateway.caches.exists(scope, first.name, first.key):
            return runner_pb2.CacheReceipt(saved=False)  # saved already: its files need not come

        async def chunks() -> AsyncIterator[jobs_pb2.ArtifactChunk]:
            async for message in request_iterator:
                session.touch()
                yield message.chunk
        try:
            entry = await gateway.caches.save(scope, first.name, first.key, chunks(), gateway.cache_max_bytes)
        except ArtifactTooLarge as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except (ArtifactError, CacheError) as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except OSError as err:
            log.error("cannot save a cache: %s", err)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the orchestrator cannot save caches right now")
        if entry is None:
            return runner_pb2.CacheReceipt(saved=False)
        log.info("cache saved", extra={"fields": {"job": session.job.job_id, "cache": entry.name, "key": entry.key,
                                                 "bytes": entry.size}})
        return runner_pb2.CacheReceipt(saved=True, files=len(entry.files), bytes=entry.size)
