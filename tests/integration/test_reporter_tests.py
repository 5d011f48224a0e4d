"""A job's JUnit summary in the forge: the GitHub check run (summary, title, annotations; the fake
checks every body against the Checks API schema) and Forgejo's status description."""

from __future__ import annotations

from common.junit import TestFailure, TestSummary
from common.rpc import jobs_pb2
from tests.integration.events import S, job_event, new_job_id, step
from tests.integration.stack import IntegrationStack

FAIL = jobs_pb2.STEP_STATE_FAILED

SUMMARY = TestSummary(
    passed=41, failed=2, skipped=3, errors=1, files=2,
    failures=(
        TestFailure("test_div", "tests.test_math", "ZeroDivisionError: division by zero", "tests/test_math.py", 12),
        TestFailure("test_pipe|name", "tests.test_io", "expected 'a|b'\nmore lines", "", 0),
        TestFailure("test_db", "tests.test_db", "fixture 'pg' not found", "tests/test_db.py", 7, error=True),
    ),
    problems=("build/other/*.xml: no file matched",),
)


def _event(job_id: str, state: int, forge: str = "github") -> jobs_pb2.JobEvent:
    event = job_event(job_id, state, forge, key="test", steps=(step(0, "pytest", FAIL, exit_code=1),))
    event.tests.CopyFrom(SUMMARY.to_proto())
    return event


async def test_check_run_lists_failing_tests_and_annotates_known_lines(stack: IntegrationStack):
    job = new_job_id()
    await stack.integration.reporter.handle(job_event(job, S.JOB_STATE_RUNNING, key="test"))
    await stack.integration.reporter.handle(_event(job, S.JOB_STATE_FAILED))
    run_id, status, conclusion = stack.github.check_run_statuses()[-1]
    assert (status, conclusion) == ("completed", "failure")
    output = stack.github.check_runs[run_id]["output"]
    assert output["title"] == "Failed: step 'pytest' exited with 1 · tests: 41 passed, 2 failed, 1 error, 3 skipped"
    summary = output["summary"]
    assert "**Tests:** 41 passed, 2 failed, 1 error, 3 skipped (2 report files)" in summary
    assert ("| ❌ | tests.test_math.test_div | ZeroDivisionError: division by zero | tests/test_math.py:12 |"
            in summary)
    # A pipe or newline in a name or message cannot break the table.
    assert "| ❌ | tests.test_io.test_pipe\\|name | expected 'a\\|b' more lines |  |" in summary
    assert "| 💥 | tests.test_db.test_db | fixture 'pg' not found | tests/test_db.py:7 |" in summary
    assert "build/other/*.xml: no file matched" in summary
    # Annotations only where the report gave a file and a line, sent once (with the final state).
    assert stack.github.annotations[run_id] == [
        {"path": "tests/test_math.py", "start_line": 12, "end_line": 12, "annotation_level": "failure",
         "title": "tests.test_math.test_div", "message": "ZeroDivisionError: division by zero"},
        {"path": "tests/test_db.py", "start_line": 7, "end_line": 7, "annotation_level": "failure",
         "title": "tests.test_db.test_db", "message": "fixture 'pg' not found"},
    ]


async def test_forgejo_status_description_carries_the_counts(stack: IntegrationStack):
    job = new_job_id()
    await stack.integration.reporter.handle(_event(job, S.JOB_STATE_FAILED, forge="forgejo"))
    [body] = [b for _, _, b in stack.forgejo.statuses if b["context"] == "solstice/test"]
    assert body["state"] == "failure"
    assert body["description"] == "Failed: step 'pytest' exited with 1 · tests: 41 passed, 2 failed, 1 error, 3 skipped"


async def test_a_job_without_reports_says_nothing_about_tests(stack: IntegrationStack):
    job = new_job_id()
    await stack.integration.reporter.handle(job_event(job, S.JOB_STATE_SUCCEEDED))
    [run] = stack.github.check_runs.values()
    assert "tests" not in run["output"]["title"] and "**Tests:**" not in run["output"]["summary"]
    assert "annotations" not in run["output"]
