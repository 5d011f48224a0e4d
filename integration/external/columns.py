"""Out-of-tree CI results as dashboard columns (``dashboard.columns.ColumnSource``).

Each downstream job becomes a column of the repository matrix and an entry of
a pull request's "external CI" section: ``external / <downstream> / <job>``,
its latest state per commit. The job name, the artifact link and the test
counts are the downstream's claims (``ExternalJob.claimed_*``): the page shows
them as such, and only http(s) links are ever made clickable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.errors import SolsticeError
from dashboard.columns import ColumnUnavailable, ExternalResult
from integration.events import Forge
from integration.external.allowlist import RepoKey
from integration.external.read import ExternalJob, ExternalResults

# GitHub's check-run conclusions (what the results API takes) in the matrix's states
CONCLUSIONS = {"success": "succeeded", "failure": "failed", "cancelled": "cancelled", "timed_out": "failed",
               "skipped": "cancelled", "neutral": "succeeded"}


def state_of(job: ExternalJob) -> str:
    """The matrix state of a downstream job: running until it completed, then by its conclusion."""
    if job.status != "completed":
        return "running" if job.status == "in_progress" else "queued"
    return CONCLUSIONS.get(job.conclusion or "", "errored")


def summary_of(job: ExternalJob) -> str:
    parts = [f"{job.downstream} ({job.level})" if job.level else job.downstream]
    tests = job.claimed_tests
    if tests is not None and tests.total:
        parts.append(f"tests: {tests.passed} passed, {tests.failed} failed, {tests.skipped} skipped, "
                     f"{tests.errors} errors (as reported)")
    return "; ".join(parts)


class ExternalColumns:
    """``ColumnSource`` over the out-of-tree results this integration received."""

    name = "out-of-tree CI"

    def __init__(self, read: ExternalResults) -> None:
        self.read = read

    async def results(self, forge: str, repo: str, shas: Sequence[str]) -> Mapping[str, Sequence[ExternalResult]]:
        try:
            upstream = RepoKey(Forge(forge), repo)
        except ValueError:
            return {}  # a forge out-of-tree CI does not know (a local repository): no columns
        try:
            cells = await self.read.columns(upstream, shas)
        except SolsticeError as err:
            raise ColumnUnavailable(str(err)) from None
        return {sha: [ExternalResult(column, state_of(job), job.claimed_artifact_url or "", summary_of(job))
                      for column, job in sorted(by_column.items())]
                for sha, by_column in cells.items()}
