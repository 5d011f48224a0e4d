"""``cidev run`` of a job with ``report junit``: the runner reads the report in the checkout
after a failing step and the failing tests are printed with the job's result."""

from __future__ import annotations

from tests.cidev.test_run import cidev_run, git, make_repo

WORKFLOW = """\
workflow name="reports" {
  job id="test" runs_on="illumos-stable" {
    report junit="build/test-results/**/*.xml"
    report junit="missing/*.xml"
    step name="tests" run="mkdir -p build/test-results/unit && cp report.xml build/test-results/unit/ && exit 1"
  }
}
"""

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="pytest">
    <testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" line="3"/>
    <testcase classname="tests.test_math" name="test_div" file="tests/test_math.py" line="12">
      <failure message="ZeroDivisionError: division by zero">Traceback</failure>
    </testcase>
    <testcase classname="tests.test_io" name="test_read"><error message="fixture 'tmp' not found"/></testcase>
    <testcase classname="tests.test_io" name="test_skip"><skipped/></testcase>
  </testsuite>
</testsuites>
"""


def test_failing_tests_are_read_after_a_failed_step_and_printed(tmp_path):
    repo = make_repo(tmp_path / "r", workflow=WORKFLOW)
    (repo / "report.xml").write_text(REPORT)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "report")
    out = cidev_run(repo)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "[test] * test reports: 1 passed, 1 failed, 1 error, 1 skipped (1 file)" in lines
    assert "[test] * test reports: missing/*.xml: no file matched" in lines
    assert "[test] tests: 1 passed, 1 failed, 1 error, 1 skipped" in lines
    assert "[test] FAILED tests.test_math.test_div (tests/test_math.py:12): ZeroDivisionError: division by zero" in lines
    assert "[test] ERROR tests.test_io.test_read: fixture 'tmp' not found" in lines
    # The job's result is still its steps'.
    assert any(line.startswith("[test] job failed") and "step 1 (tests) failed with exit code 1" in line for line in lines)
