"""Closing a pull request cancels its jobs: the request, and who carries it out.

The orchestrator side implements ``JobCanceller`` (it knows which jobs of the
PR are queued or running). Until one is wired in, ``LoggingCanceller``
records and logs each request so nothing is silently dropped.
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
