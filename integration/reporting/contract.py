"""What a forge reporter does; one implementation per forge."""

from __future__ import annotations

from typing import Protocol

from common.rpc import jobs_pb2
from common.workflow import WorkflowError
from integration.events import BuildRequested
from integration.reporting.states import StateSpec
from integration.store import ReportRecord


class ForgeReporter(Protocol):
    """Shows job states on one forge. Methods raise ``ForgeUnavailable`` (retry later) or ``ForgeRejected``."""

    async def report(self, event: jobs_pb2.JobEvent, previous: ReportRecord | None, spec: StateSpec,
                     deadline: float | None = None) -> str:
        """Show ``event`` (whose state is ``spec``); returns the forge's id for the job's entry ("" if none).

        Idempotent: called again for the same state (its record was lost), it
        finds the entry it made instead of making another. No call starts after
        ``deadline`` (``time.monotonic()``).
        """

    async def report_invalid_workflow(
        self, build: BuildRequested, errors: tuple[WorkflowError, ...], deadline: float | None = None,
    ) -> None:
        """Show a failed check/status for ``build`` listing the workflow's errors with their positions."""

    async def report_refused(self, build: BuildRequested, title: str, detail: str,
                             deadline: float | None = None) -> None:
        """Show a failed check/status for ``build``, which Solstice will not run: ``title``, then why."""
