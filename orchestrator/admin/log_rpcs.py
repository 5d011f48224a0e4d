"""AdminService's log calls: TailLogs (read role) and CollectGarbage (admin role).

Mixed into ``AdminServicer``, which provides ``logs`` (the node's
``LogReader``), ``retention`` and ``_call``. TailLogs streams the pages the
reader yields - any job's log, on any node (orchestrator/logstore/reader.py) -
with no deadline of its own: a followed log sends a keepalive page while
nothing happens, so a stalled stream is told from a quiet one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from common.rpc import admin_pb2
from orchestrator.logstore import LogNotFound, LogStoreError
from orchestrator.logstore.reader import LogReader, LogRequestError
from orchestrator.logstore.retention import Retention
from orchestrator.store import JobNotFound, StoreError


class LogRpcs:
    """The log methods of ``AdminServicer``."""

    logs: LogReader
    retention: Retention | None

    async def _call(self, context, coro): ...  # provided by AdminServicer

    async def TailLogs(self, request, context) -> AsyncIterator[admin_pb2.LogPage]:
        pages = self.logs.pages(request.job_id, request.attempt, max(1, request.from_sequence), request.follow)
        try:
            async for page in pages:
                yield page
        except (JobNotFound, LogNotFound) as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except LogRequestError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except (LogStoreError, StoreError) as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err).splitlines()[0])
        finally:
            await pages.aclose()

    async def CollectGarbage(self, request, context):
        async def go() -> admin_pb2.GarbageReport:
            if self.retention is None:
                raise LogStoreError("this node keeps no retention (no log service)")
            if request.older_than_seconds < 0:
                raise LogRequestError("older_than_seconds cannot be negative")
            report = await self.retention.collect(request.dry_run, request.older_than_seconds or None)
            reply = admin_pb2.GarbageReport(dry_run=report.dry_run, jobs=report.jobs, logs=report.logs,
                                            log_bytes=report.log_bytes, job_ids=list(report.job_ids))
            reply.cutoff.FromDatetime(report.cutoff)
            return reply
        try:
            return await self._call(context, go())
        except LogRequestError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except LogStoreError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
