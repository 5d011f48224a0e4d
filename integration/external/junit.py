"""Test counts from JUnit XML reports, read with defusedxml (the files come from the code under test).

Counts per ``<testcase>``: one with a ``<failure>`` is failed, one with an
``<error>`` is an error, one with ``<skipped>`` is skipped, any other
passed. ``<testsuites>``, a lone ``<testsuite>`` and suites nested in
suites are all read.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXml
from defusedxml import DefusedXmlException

from integration.errors import IntegrationError
from integration.external.records import SuiteSummary

MAX_FILE_BYTES = 256 * 1024 * 1024


class JUnitUnreadable(IntegrationError):
    """A JUnit file could not be read or is not JUnit XML."""


def _count(root: Element) -> SuiteSummary:
    passed = failed = skipped = errors = 0
    for case in root.iter("testcase"):
        children = {child.tag for child in case}
        if "failure" in children:
            failed += 1
        elif "error" in children:
            errors += 1
        elif "skipped" in children:
            skipped += 1
        else:
            passed += 1
    return SuiteSummary(passed, failed, skipped, errors)


def read_junit(path: Path) -> SuiteSummary:
    """The counts of one file; ``JUnitUnreadable`` saying why not."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise JUnitUnreadable(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        root = SafeXml.parse(str(path)).getroot()
    except OSError as err:
        raise JUnitUnreadable(f"cannot read {path}: {err.strerror}") from err
    except DefusedXmlException as err:
        raise JUnitUnreadable(f"{path} uses XML features refused for safety ({type(err).__name__})") from err
    except SafeXml.ParseError as err:
        raise JUnitUnreadable(f"{path} is not XML: {err}") from err
    if root is None:
        raise JUnitUnreadable(f"{path} is not XML: it has no root element")
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitUnreadable(f"{path} is not JUnit XML (its root is <{root.tag}>)")
    return _count(root)


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
