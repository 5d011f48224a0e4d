"""The job page's "Tests" section: counts, failing tests escaped, files linked to the forge."""

from __future__ import annotations

from common.junit import TestFailure, TestSummary
from tests.dashboard.conftest import Served
from tests.dashboard.support import C2


async def test_the_job_page_shows_what_the_reports_said(served: Served) -> None:
    failing = served.seeded.jobs[(C2, "test")]
    answer = await served.client.get(f"/jobs/{failing}")
    assert 'id="tests"' not in await answer.text()  # no reports: no section
    await served.store.put_test_summary(failing, 1, TestSummary(
        passed=40, failed=1, errors=1, files=2, problems=("extra/*.xml: no file matched",),
        failures=(TestFailure("test_div", "tests.test_math", "assert 1 == <b>2</b>", "tests/test_math.py", 12),
                  TestFailure("test_db", "tests.test_db", "fixture 'pg' not found", error=True))))
    page = await (await served.client.get(f"/jobs/{failing}")).text()
    tests = page[page.index('<section id="tests"'):page.index('<section id="log-section"')]
    assert "<strong>40 passed, 1 failed, 1 error</strong> from 2 report files" in tests
    assert "<th scope=\"row\">tests.test_math.test_div</th><td><pre>assert 1 == &lt;b&gt;2&lt;/b&gt;</pre></td>" in tests
    assert (f'<a href="https://github.com/acme/widgets/blob/{C2}/tests/test_math.py#L12">tests/test_math.py:12</a>'
            in tests)
    assert "tests.test_db.test_db" in tests and "st-errored" in tests
    assert "<li>extra/*.xml: no file matched</li>" in tests


async def test_the_matrix_and_pull_pages_show_the_counts(served: Served) -> None:
    failing = served.seeded.jobs[(C2, "test")]
    await served.store.put_test_summary(failing, 1, TestSummary(passed=40, failed=2, files=1))
    row = await served.store.job_row(failing)
    assert row is not None and row.tests is not None and row.tests.text() == "40 passed, 2 failed"
    matrix = await (await served.client.get("/github/acme/widgets")).text()
    assert "test: failed · " in matrix and "tests: 40 passed, 2 failed" in matrix
