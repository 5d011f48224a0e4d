"""What the forge asks of jobs already queued: the requests, and who carries them out.

Closing a pull request cancels its jobs, and a new head of a pull request
cancels the jobs of the heads it superseded (``JobCanceller``); "Re-run" on
a GitHub check run retries that job, "Re-run all checks" every finished job
of the commit (``JobRetrier``). The orchestrator side implements both (it
knows the jobs): in-process on the single node (``orchestrator.singlenode.cancel``),
over AdminService in multi-host mode (``integration.orchestrator``). Without
one, ``LoggingCanceller`` / ``LoggingRetrier`` record and log each request
so nothing is silently dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from common.rpc import jobs_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancel every queued or running job built for pull request ``pull_request`` of ``repo``
    (but those at ``keep_sha``: the new head that supersedes the others)."""

    forge: str  # "github" / "forgejo"; matches JobRequest.checkout.forge
    repo: str  # "owner/name"; matches JobRequest.checkout.repo
    pull_request: int  # matches JobRequest.checkout.pull_request
    reason: str
    keep_sha: str = ""  # "": every job of the pull request

    def covers(self, checkout: jobs_pb2.Checkout) -> bool:
        """Whether a job checking out ``checkout`` is one this request cancels."""
        return ((checkout.forge, checkout.repo, checkout.pull_request) == (self.forge, self.repo, self.pull_request)
                and checkout.sha != self.keep_sha)


class JobCanceller(Protocol):
    async def cancel(self, request: CancelRequest) -> int:
        """Ask for the cancellation; return how many jobs it reached (0 is fine: none were running)."""


class LoggingCanceller:
    """Records cancel requests (``requests``) and logs them; cancels nothing itself."""

    def __init__(self) -> None:
        self.requests: list[CancelRequest] = []

    async def cancel(self, request: CancelRequest) -> int:
        self.requests.append(request)
        log.info(
            "pull request jobs to cancel, but no canceller is wired in",
            extra={"fields": {"forge": request.forge, "repo": request.repo, "pull_request": request.pull_request,
                              "keep_sha": request.keep_sha, "reason": request.reason}},
        )
        return 0


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """Run job ``job_id`` again as a new attempt (it must have finished)."""

    forge: str
    repo: str  # "owner/name"; the job's checkout.repo must match
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CommitRetryRequest:
    """Run every finished job of ``repo`` built at commit ``sha`` again ("Re-run all checks")."""

    forge: str
    repo: str
    sha: str
    reason: str


class JobRetrier(Protocol):
    async def retry(self, request: RetryRequest) -> bool:
        """Queue a new attempt; False (and a log line) when the job is unknown, of another repo, or still running."""

    async def retry_commit(self, request: CommitRetryRequest) -> int:
        """Queue a new attempt of each finished job of the commit; how many."""


class LoggingRetrier:
    """Records retry requests (``requests``) and logs them; retries nothing itself."""

    def __init__(self) -> None:
        self.requests: list[RetryRequest | CommitRetryRequest] = []

    async def retry(self, request: RetryRequest) -> bool:
        self.requests.append(request)
        log.info(
            "re-run requested, but no retrier is wired in",
            extra={"fields": {"forge": request.forge, "repo": request.repo, "job_id": request.job_id,
                              "reason": request.reason}},
        )
        return False

    async def retry_commit(self, request: CommitRetryRequest) -> int:
        self.requests.append(request)
        log.info(
            "re-run of a commit's jobs requested, but no retrier is wired in",
            extra={"fields": {"forge": request.forge, "repo": request.repo, "sha": request.sha,
                              "reason": request.reason}},
        )
        return 0
