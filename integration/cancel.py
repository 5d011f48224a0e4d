"""What the forge asks of jobs already queued: the requests, and who carries them out.

Closing a pull request cancels its jobs (``JobCanceller``); "Re-run" on a
GitHub check run retries that job (``JobRetrier``). The orchestrator side
implements both (it knows the jobs). Until one is wired in,
``LoggingCanceller`` / ``LoggingRetrier`` record and log each request so
nothing is silently dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancel every queued or running job built for pull request ``pull_request`` of ``repo``."""

    forge: str  # "github" / "forgejo"; matches JobRequest.checkout.forge
    repo: str  # "owner/name"; matches JobRequest.checkout.repo
    pull_request: int  # matches JobRequest.checkout.pull_request
    reason: str


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
            "pull request closed: cancel its jobs",
            extra={"fields": {"forge": request.forge, "repo": request.repo, "pull_request": request.pull_request,
                              "reason": request.reason}},
        )
        return 0


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """Run job ``job_id`` again as a new attempt (it must have finished)."""

    forge: str
    repo: str  # "owner/name"; the job's checkout.repo must match
    job_id: str
    reason: str


class JobRetrier(Protocol):
    async def retry(self, request: RetryRequest) -> bool:
        """Queue a new attempt; False (and a log line) when the job is unknown, of another repo, or still running."""


class LoggingRetrier:
    """Records retry requests (``requests``) and logs them; retries nothing itself."""

    def __init__(self) -> None:
        self.requests: list[RetryRequest] = []

    async def retry(self, request: RetryRequest) -> bool:
        self.requests.append(request)
        log.info(
            "re-run requested, but no retrier is wired in",
            extra={"fields": {"forge": request.forge, "repo": request.repo, "job_id": request.job_id,
                              "reason": request.reason}},
        )
        return False
