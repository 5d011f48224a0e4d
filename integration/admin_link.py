"""Cancel and re-run in multi-host mode: the forge's requests sent to an orchestrator's AdminService.

``solstice-integration serve`` knows no job itself; with ``admin.address``
set it asks an orchestrator node over AdminService (``ciadm``'s client: a
TLS listener or a Unix socket, an operator token with the ``operate`` role):
``List`` finds the jobs, ``Cancel``/``Retry`` act on them, with the same
rules as the single node's ``NodeCanceller``/``NodeRetrier``. Any node will
do: they share the store, and a node cancels a job another node runs
through the store. A job whose request still waits in the queue (no node
took it yet) is not in the store: it is not reached, and runs when taken.

The orchestrator unreachable or the token refused is
``OrchestratorUnavailable`` (the webhook answers 503; a superseded head's
cancel is only logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

from ciadm.client import AdminClient, AdminError, AdminRefused, JobNotFound, NotAuthenticated, NotPermitted
from ciadm.target import Target, grpc_target
from common.rpc import admin_pb2, jobs_pb2
from integration.cancel import CancelRequest, CommitRetryRequest, RetryRequest
from integration.errors import OrchestratorUnavailable
from integration.settings import AdminLinkSettings

log = logging.getLogger(__name__)

SCAN_LIMIT = 1000  # AdminService's List maximum; an open PR's or a commit's jobs are among the newest
TERMINAL = frozenset({jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED,
                      jobs_pb2.JOB_STATE_ERRORED})


def admin_target(settings: AdminLinkSettings) -> Target:
    address, unix = grpc_target(settings.address)
    return Target(address, unix, settings.token.strip(), settings.tls_ca, settings.tls_cert, settings.tls_key)


class AdminLink:
    """``JobCanceller`` and ``JobRetrier`` over AdminService. Holds no connection between requests."""

    def __init__(self, settings: AdminLinkSettings,
                 client: Callable[[Target, float], AbstractAsyncContextManager[AdminClient]] = AdminClient) -> None:
        self.target = admin_target(settings)
        self.timeout = float(settings.timeout)
        self._client = client

    async def cancel(self, request: CancelRequest) -> int:
        fields = {"repo": request.repo, "pull_request": request.pull_request, "keep_sha": request.keep_sha}
        try:
            async with self._client(self.target, self.timeout) as admin:
                jobs = await admin.list(admin_pb2.ListJobsRequest(
                    repo=request.repo, ref=f"refs/pull/{request.pull_request}/head", limit=SCAN_LIMIT))
                reached = 0
                for job in jobs:
                    if job.state in TERMINAL or not request.covers(job.checkout):
                        continue
                    try:
                        await admin.cancel(job.job_id, request.reason)
                    except (JobNotFound, AdminRefused) as err:
                        _unless_refused(err)
                        continue  # it ended meanwhile
                    reached += 1
        except AdminError as err:
            raise OrchestratorUnavailable(f"cannot cancel the jobs of pull request #{request.pull_request}: {err}"
                                          ) from err
        log.info("pull request jobs cancelled: %s", request.reason, extra={"fields": {**fields, "jobs": reached}})
        return reached

    async def retry(self, request: RetryRequest) -> bool:
        fields = {"job_id": request.job_id, "repo": request.repo, "forge": request.forge}
        try:
            async with self._client(self.target, self.timeout) as admin:
                try:
                    job = await admin.get(request.job_id)
                except JobNotFound:
                    log.warning("re-run refused: no such job", extra={"fields": fields})
                    return False
                if not _of(job, request.forge, request.repo):
                    log.warning("re-run refused: not a job this repository's webhook made", extra={"fields": fields})
                    return False
                return await _retry(admin, job.job_id, fields)
        except AdminError as err:
            raise OrchestratorUnavailable(f"cannot re-run job {request.job_id}: {err}") from err

    async def retry_commit(self, request: CommitRetryRequest) -> int:
        try:
            async with self._client(self.target, self.timeout) as admin:
                jobs = await admin.list(admin_pb2.ListJobsRequest(repo=request.repo, limit=SCAN_LIMIT))
                done = 0
                for job in jobs:
                    if job.checkout.sha != request.sha or job.state not in TERMINAL or not _of(
                            job, request.forge, request.repo):
                        continue
                    done += await _retry(admin, job.job_id, {"job_id": job.job_id, "repo": request.repo})
                return done
        except AdminError as err:
            raise OrchestratorUnavailable(f"cannot re-run the jobs of {request.sha[:12]}: {err}") from err


def _of(job: admin_pb2.JobInfo, forge: str, repo: str) -> bool:
    """A job a verified webhook of ``forge``/``repo`` made (never one an operator submitted)."""
    return (job.checkout.forge, job.checkout.repo) == (forge, repo) and job.source == jobs_pb2.JOB_SOURCE_FORGE


async def _retry(admin: AdminClient, job_id: str, fields: Mapping[str, object]) -> bool:
    try:
        job = await admin.retry(job_id)
    except (JobNotFound, AdminRefused) as err:
        _unless_refused(err)
        log.info("re-run refused: %s", err, extra={"fields": fields})
        return False
    log.info("job re-run", extra={"fields": {**fields, "attempt": job.attempt}})
    return True


def _unless_refused(err: AdminError) -> None:
    """Re-raise what says the link itself is unusable (a bad token, a role too low)."""
    if isinstance(err, (NotAuthenticated, NotPermitted)):
        raise err
