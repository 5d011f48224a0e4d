"""Test counts from JUnit XML reports for ``solstice-report``, read by common/junit.py (defusedxml,
each file up to 32 MiB: the files come from the code under test).

Counts per ``<testcase>``: one with a ``<failure>`` is failed, one with an
``<error>`` is an error, one with ``<skipped>`` is skipped, any other
passed. ``<testsuites>``, a lone ``<testsuite>`` and suites nested in
suites are all read.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from common.junit import read_one
from integration.errors import IntegrationError
from integration.external.records import SuiteSummary


class JUnitUnreadable(IntegrationError):
    """A JUnit file could not be read or is not JUnit XML."""


def read_junit(path: Path) -> SuiteSummary:
    """The counts of one file; ``JUnitUnreadable`` saying why not.

    Read with the runner's reader (common/junit.py: defusedxml, bounded), so a
    report counts the same whether a Solstice job or a downstream CI sends it."""
    if not path.is_file():
        raise JUnitUnreadable(f"cannot read {path}: not a file")
    summary = read_one(path, str(path))
    if summary.problems:
        raise JUnitUnreadable(summary.problems[0])
    return SuiteSummary(summary.passed, summary.failed, summary.skipped, summary.errors)


def junit_files(patterns: Iterable[str]) -> list[Path]:
    """The files the glob ``patterns`` match (``**`` spans directories), each once, sorted."""
    found = {Path(p) for pattern in patterns for p in glob.glob(pattern, recursive=True) if Path(p).is_file()}
    return sorted(found)


def summarize(paths: Iterable[Path]) -> SuiteSummary:
    total = SuiteSummary()
    for path in paths:
        one = read_junit(path)
        total = SuiteSummary(total.passed + one.passed, total.failed + one.failed, total.skipped + one.skipped,
                             total.errors + one.errors)
    return total
