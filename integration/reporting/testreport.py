"""A job's test report in the forge's words: check-run markdown and annotations, a status line.

The numbers come from the job's terminal ``JobEvent.tests`` (read by the
runner from the job's JUnit files, bounded by common/junit.py). GitHub gets a
section of the check run's summary listing the failing tests and one
annotation per failure whose file and line the report gave; Forgejo gets the
counts in its status description (through the title).
"""

from __future__ import annotations

from typing import Any

from common.junit import TestSummary
from common.log import masker
from common.rpc import jobs_pb2

MAX_LISTED = 50  # failing tests listed in the summary (the runner keeps at most that many anyway)
MAX_ANNOTATIONS = 50  # GitHub takes 50 per request
_MESSAGE_CHARS = 200


def event_tests(event: jobs_pb2.JobEvent) -> TestSummary | None:
    """The summary the event carries, or None when the job read no reports."""
    return TestSummary.from_proto(event.tests) if event.HasField("tests") else None


def _cell(text: str) -> str:
    """Text safe inside one markdown table cell: one line, pipes escaped, cut."""
    text = " ".join(text.split())
    if len(text) > _MESSAGE_CHARS:
        text = text[: _MESSAGE_CHARS - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def tests_markdown(tests: TestSummary) -> list[str]:
    """Lines of the check-run summary's "Tests" section."""
    lines = [f"**Tests:** {tests.counts_text()}"
             + (f" ({tests.files} report file{'s' if tests.files != 1 else ''})" if tests.files else ""), ""]
    if tests.failures:
        lines += ["| | test | message | where |", "|---|---|---|---|"]
        for failure in tests.failures[:MAX_LISTED]:
            where = f"{failure.file}:{failure.line}" if failure.file and failure.line else failure.file
            icon = "💥" if failure.error else "❌"
            lines.append(f"| {icon} | {_cell(failure.title)} | {_cell(failure.message)} | {_cell(where)} |")
        shown = min(len(tests.failures), MAX_LISTED)
        more = tests.failed + tests.errors - shown
        if more > 0:
            lines.append(f"\n…and {more} more (see the job page)")
        lines.append("")
    for problem in tests.problems:
        lines.append(f"- ⚠ {_cell(problem)}")
    if tests.problems:
        lines.append("")
    return [masker.mask(line) for line in lines]


def test_annotations(tests: TestSummary) -> tuple[dict[str, Any], ...]:
    """Check-run annotations for the failures whose file and line are known (at most 50)."""
    out: list[dict[str, Any]] = []
    for failure in tests.failures:
        if not failure.file or failure.line < 1:
            continue
        out.append({
            "path": failure.file,
            "start_line": failure.line,
            "end_line": failure.line,
            "annotation_level": "failure",
            "title": masker.mask(failure.title)[:255],
            "message": masker.mask(failure.message or ("error" if failure.error else "failed"))[:64 * 1024],
        })
        if len(out) == MAX_ANNOTATIONS:
            break
    return tuple(out)


test_annotations.__test__ = False  # type: ignore[attr-defined]  # a function named test_*, not a test
