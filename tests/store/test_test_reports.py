"""Test summaries of job attempts: stored and read back on both back-ends, replaced, per attempt."""

from __future__ import annotations

from common.junit import TestFailure, TestSummary
from orchestrator.store import Store
from tests.store.conftest import job


async def test_summary_is_kept_per_attempt_and_replaced(store: Store) -> None:
    record = await store.submit(job("tr1"))
    assert await store.test_summary(record.job_id, 1) is None
    first = TestSummary(10, 2, 1, 0, (TestFailure("t", "c", "boom", "a.py", 3), TestFailure("u", error=True)), 1)
    await store.put_test_summary(record.job_id, 1, first)
    assert await store.test_summary(record.job_id, 1) == first
    assert await store.test_summary(record.job_id, 2) is None
    again = TestSummary(passed=13, files=2, problems=("x/*.xml: no file matched",))
    await store.put_test_summary(record.job_id, 1, again)
    assert await store.test_summary(record.job_id, 1) == again
