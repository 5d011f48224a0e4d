"""The "Tests" section of a job page: what the job's JUnit reports said (counts, failing tests)."""

from __future__ import annotations

from common.junit import TestSummary
from dashboard.ansi import escape as e
from dashboard.links import ForgeLinks
from dashboard.pages.layout import badge
from orchestrator.store import JobRecord


def section(tests: TestSummary | None, job: JobRecord, links: ForgeLinks) -> str:
    """The section's HTML; "" for a job without reports. Each failing test's file links to the
    forge's view of it at the job's commit where the forge is known."""
    if tests is None:
        return ""
    counts = (f'<p class="tests-counts"><strong>{e(tests.counts_text())}</strong>'
              f" from {tests.files} report file{'' if tests.files == 1 else 's'}</p>")
    rows = []
    for failure in tests.failures:
        where = ""
        if failure.file:
            label = f"{failure.file}:{failure.line}" if failure.line else failure.file
            url = links.file(job.request.checkout.forge, job.repo, job.request.checkout.sha, failure.file, failure.line)
            where = f'<a href="{e(url)}">{e(label)}</a>' if url else e(label)
        state = badge("errored", "error") if failure.error else badge("failed")
        rows.append(f'<tr><td>{state}</td><th scope="row">{e(failure.title)}</th>'
                    f"<td><pre>{e(failure.message)}</pre></td><td>{where}</td></tr>")
    listed = len(tests.failures)
    more = tests.failed + tests.errors - listed
    table = ""
    if rows:
        table = ('<table class="tests"><thead><tr><th scope="col">result</th><th scope="col">test</th>'
                 '<th scope="col">message</th><th scope="col">where</th></tr></thead>'
                 f'<tbody>{"".join(rows)}</tbody></table>')
        if more > 0:
            table += f'<p class="notice">…and {more} more failing tests not listed.</p>'
    problems = "".join(f"<li>{e(p)}</li>" for p in tests.problems)
    if problems:
        problems = f'<ul class="tests-problems">{problems}</ul>'
    return (f'<section id="tests" aria-labelledby="tests-h"><h2 id="tests-h">Tests</h2>{counts}{table}{problems}'
            "</section>")
