"""Job states as Forgejo commit statuses, context ``solstice/<job key>``."""

from __future__ import annotations

from common.rpc import jobs_pb2
from common.workflow import WorkflowError
from integration.events import BuildRequested, Forge, Repo
from integration.forges.forgejo_api import DESCRIPTION_LIMIT, CommitStatus, ForgejoClient
from integration.reporting.states import StateSpec
from integration.reporting.summary import short_description
from integration.store import ReportRecord

WORKFLOW_CONTEXT = "solstice/workflow"


class ForgejoReporter:
    """``ForgeReporter`` for Forgejo and Gitea (commit statuses)."""

    def __init__(self, client: ForgejoClient, public_url: str) -> None:
        self.client = client
        self.public_url = public_url.rstrip("/")

    async def report(self, event: jobs_pb2.JobEvent, previous: ReportRecord | None, spec: StateSpec,
                     deadline: float | None = None) -> str:
        checkout = event.checkout
        repo = Repo(Forge.FORGEJO, checkout.repo, checkout.clone_url)
        status = CommitStatus(
            state=spec.forgejo_state,
            context=f"solstice/{event.key or event.name or event.job_id}",
            description=short_description(event, spec),
            target_url=f"{self.public_url}/jobs/{event.job_id}",
        )
        await self.client.set_status(repo, checkout.sha, status, deadline)  # the last status of a context wins
        return ""

    async def report_invalid_workflow(
        self, build: BuildRequested, errors: tuple[WorkflowError, ...], deadline: float | None = None,
    ) -> None:
        text = "invalid workflow: " + "; ".join(str(error) for error in errors)
        if len(text) > DESCRIPTION_LIMIT:
            text = text[: DESCRIPTION_LIMIT - 1] + "…"
        await self.client.set_status(build.repo, build.sha, CommitStatus("failure", WORKFLOW_CONTEXT, text), deadline)

    async def report_refused(self, build: BuildRequested, title: str, detail: str,
                             deadline: float | None = None) -> None:
        text = f"{title}: {detail}"
        if len(text) > DESCRIPTION_LIMIT:
            text = text[: DESCRIPTION_LIMIT - 1] + "…"
        await self.client.set_status(build.repo, build.sha, CommitStatus("failure", WORKFLOW_CONTEXT, text), deadline)
