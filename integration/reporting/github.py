"""Job states as GitHub check runs: one per job attempt, created on the first event, then updated.

Every check run Solstice creates carries an ``external_id`` that names what
it is for (``check_external_id``: the job attempt; ``workflow:<sha>`` for the
"Solstice workflow" check), and is created through
``GitHubClient.ensure_check_run``: a create whose answer was lost, a report
record lost to a store failure, or a deferred build retried after a partial
failure finds the run it made before instead of making a second one. A run
found further along than the state being reported is left as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.rpc import jobs_pb2
from common.workflow import WorkflowError
from integration.events import BuildRequested, Forge, Repo
from integration.forges.github_api import CheckRun, CheckRunOutput, FoundCheckRun, GitHubClient
from integration.reporting.states import StateSpec, github_status_of_rank
from integration.reporting.summary import MAX_ANNOTATIONS, summary, title, workflow_errors_summary
from integration.reporting.testreport import event_tests, test_annotations
from integration.store import ReportRecord

WORKFLOW_CHECK_NAME = "Solstice workflow"
MAX_ANNOTATION_REQUESTS = 10  # so at most 500 annotations; the summary lists every error anyway


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# How far a check-run status is; a run is never moved to a lower one.
STATUS_ORDER = {"queued": 1, "in_progress": 2, "completed": 3}


def check_name(event: jobs_pb2.JobEvent) -> str:
    return f"solstice/{event.key or event.name or event.job_id}"


def check_external_id(job_id: str, attempt: int) -> str:
    """The ``external_id`` of a job attempt's check run: the job id (``<job id>:<attempt>`` from attempt 2 on).

    "Re-run" hands it back (``check_run.rerequested``); the first attempt's
    keeps the bare job id that check runs made before attempts were told apart carry.
    """
    return job_id if attempt <= 1 else f"{job_id}:{attempt}"


def _annotations(event: jobs_pb2.JobEvent, spec: StateSpec) -> tuple[dict[str, Any], ...]:
    """Failing tests with a known file and line, on the final report only (GitHub appends
    annotations, so they go once, with the state that ends the run)."""
    tests = event_tests(event) if spec.terminal else None
    return test_annotations(tests) if tests is not None else ()


def _behind(found: FoundCheckRun, status: str) -> bool:
    return STATUS_ORDER.get(found.status, 0) < STATUS_ORDER[status]


class GitHubReporter:
    """``ForgeReporter`` for GitHub (Checks API)."""

    def __init__(self, client: GitHubClient, public_url: str) -> None:
        self.client = client
        self.public_url = public_url.rstrip("/")

    def details_url(self, job_id: str) -> str:
        return f"{self.public_url}/jobs/{job_id}"

    async def report(self, event: jobs_pb2.JobEvent, previous: ReportRecord | None, spec: StateSpec,
                     deadline: float | None = None) -> str:
        checkout = event.checkout
        repo = Repo(Forge.GITHUB, checkout.repo, checkout.clone_url, checkout.installation_id)
        url = self.details_url(event.job_id)
        fields = CheckRun(
            status=spec.github_status,
            conclusion=spec.github_conclusion,
            details_url=url,
            started_at=_now() if spec.github_status == "in_progress" else None,
            completed_at=_now() if spec.terminal else None,
            output=CheckRunOutput(title=title(event, spec), summary=summary(event, spec, url),
                                  annotations=_annotations(event, spec)),
        )
        if previous is None or not previous.external_id:
            created = CheckRun(
                name=check_name(event), head_sha=checkout.sha,
                external_id=check_external_id(event.job_id, event.attempt),
                status=fields.status, conclusion=fields.conclusion, details_url=fields.details_url,
                started_at=fields.started_at, completed_at=fields.completed_at, output=fields.output,
            )
            run = await self.client.ensure_check_run(repo, created, deadline)
            if not run.created and _behind(run, spec.github_status):
                # Made earlier (its answer or its record was lost) and not as far as this state yet.
                await self.client.update_check_run(repo, run.id, fields, deadline)
            return str(run.id)
        if github_status_of_rank(previous.rank) == spec.github_status and not spec.terminal:
            return previous.external_id  # e.g. provisioning: still "queued" on GitHub
        await self.client.update_check_run(repo, int(previous.external_id), fields, deadline)
        return previous.external_id

    async def report_invalid_workflow(
        self, build: BuildRequested, errors: tuple[WorkflowError, ...], deadline: float | None = None,
    ) -> None:
        annotations = [
            {
                "path": error.file,
                "start_line": max(error.line, 1),
                "end_line": max(error.line, 1),
                "start_column": max(error.col, 1),
                "end_column": max(error.col, 1),
                "annotation_level": "failure",
                "message": f"{error.path}: {error.message}" if error.path else error.message,
                "title": "Invalid workflow",
            }
            for error in errors[: MAX_ANNOTATIONS * MAX_ANNOTATION_REQUESTS]
        ]
        # GitHub takes at most 50 annotations per request and appends those of later updates.
        batches = [tuple(annotations[i:i + MAX_ANNOTATIONS]) for i in range(0, len(annotations), MAX_ANNOTATIONS)]
        count = len(errors)
        output_title = f"Invalid workflow: {count} error{'s' if count != 1 else ''}"
        output_summary = workflow_errors_summary(errors)
        check = CheckRun(
            name=WORKFLOW_CHECK_NAME,
            head_sha=build.sha,
            status="completed",
            conclusion="failure",
            external_id=f"workflow:{build.sha}",
            completed_at=_now(),
            output=CheckRunOutput(title=output_title, summary=output_summary,
                                  annotations=batches[0] if batches else ()),
        )
        run = await self.client.ensure_check_run(build.repo, check, deadline)
        if not run.created:
            # A retry after a partial failure: the check exists and its summary lists every error;
            # annotations already sent would be appended twice, so none are sent again.
            return
        for batch in batches[1:]:
            more = CheckRun(output=CheckRunOutput(title=output_title, summary=output_summary, annotations=batch))
            await self.client.update_check_run(build.repo, run.id, more, deadline)

    async def report_refused(self, build: BuildRequested, title: str, detail: str,
                             deadline: float | None = None) -> None:
        check = CheckRun(
            name=WORKFLOW_CHECK_NAME, head_sha=build.sha, status="completed", conclusion="failure",
            external_id=f"refused:{build.sha}", completed_at=_now(), output=CheckRunOutput(title=title, summary=detail),
        )
        await self.client.ensure_check_run(build.repo, check, deadline)
