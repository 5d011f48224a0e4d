"""Test reports of job attempts in SQL, mixed into ``SqlStore`` (migration ``test_reports``).

The node that ran an attempt writes what its runner read from the job's JUnit
files (``put_test_summary``); the dashboard's job page reads it back.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from common.junit import TestSummary
from common.rpc import jobs_pb2
from orchestrator.store.records import Row


class TestReports(abc.ABC):
    """Where test summaries are kept: part of ``Store``."""

    __test__ = False  # not a pytest test class

    @abc.abstractmethod
    async def put_test_summary(self, job_id: str, attempt: int, summary: TestSummary) -> None:
        """Keep what attempt ``attempt`` of ``job_id``'s reports said (replacing what it had)."""

    @abc.abstractmethod
    async def test_summary(self, job_id: str, attempt: int) -> TestSummary | None:
        """The attempt's test summary, or None when it read no reports."""


class TestReportsSql(TestReports):
    """``TestReports`` in SQL; needs ``_run`` from ``SqlStore``."""

    if TYPE_CHECKING:
        async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

    async def put_test_summary(self, job_id: str, attempt: int, summary: TestSummary) -> None:
        await self._run(
            "INSERT INTO test_reports (job_id, attempt, passed, failed, skipped, errors, summary)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id, attempt) DO UPDATE SET"
            " passed = excluded.passed, failed = excluded.failed, skipped = excluded.skipped,"
            " errors = excluded.errors, summary = excluded.summary",
            job_id, attempt, summary.passed, summary.failed, summary.skipped, summary.errors,
            summary.to_proto().SerializeToString(),
        )

    async def test_summary(self, job_id: str, attempt: int) -> TestSummary | None:
        rows = await self._run("SELECT summary FROM test_reports WHERE job_id = $1 AND attempt = $2", job_id, attempt)
        if not rows:
            return None
        return TestSummary.from_proto(jobs_pb2.TestSummary.FromString(bytes(rows[0]["summary"])))
