"""JUnit XML test reports to a bounded, typed summary: counts and the failing tests.

The runner reads the files a job's ``report junit="..."`` patterns match in
its checkout once the steps are done, and sends the ``TestSummary`` back with
``Complete``; the node stores it, the dashboard shows it and the integration
puts it in the forge's check run. The files come from the code under test, so
they are read with defusedxml (no DTDs, no entity expansion), each one up to
``MAX_FILE_BYTES``, at most ``MAX_FILES`` of them, and only ``MAX_FAILURES``
failures are kept with names and messages cut to a few hundred characters:
whatever a test suite writes, the summary fits one gRPC message and one check
run.

Counting per ``<testcase>``: one with a ``<failure>`` is failed, with an
``<error>`` an error, with ``<skipped>`` skipped, any other passed.
``<testsuites>``, a lone ``<testsuite>`` and nested suites are all read.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXml
from defusedxml import DefusedXmlException

from common.rpc import jobs_pb2
from common.workflow.limits import show_bytes

MAX_FILES = 200
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_FAILURES = 50
MAX_NAME_CHARS = 300
MAX_MESSAGE_CHARS = 1000
MAX_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class TestFailure:
    """One failed or errored test case."""

    __test__ = False  # not a pytest test class

    name: str
    classname: str = ""
    message: str = ""
    file: str = ""  # relative to the checkout; "" when the report does not say
    line: int = 0  # 0 when the report does not say
    error: bool = False  # <error>: the test could not run, rather than <failure>

    @property
    def title(self) -> str:
        """``classname.name`` (or just the name) as people read it."""
        return f"{self.classname}.{self.name}" if self.classname else self.name


@dataclass(frozen=True, slots=True)
class TestSummary:
    """What a job's reports said; ``failures`` holds the first ``MAX_FAILURES``."""

    __test__ = False

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    failures: tuple[TestFailure, ...] = ()
    files: int = 0
    problems: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.errors

    def counts_text(self) -> str:
        """``"12 passed, 2 failed, 1 skipped"``: the nonzero counts (``"no tests"`` when none)."""
        parts = [f"{n} {what}" for n, what in ((self.passed, "passed"), (self.failed, "failed"),
                                               (self.errors, "errors" if self.errors != 1 else "error"),
                                               (self.skipped, "skipped")) if n]
        return ", ".join(parts) or "no tests"

    def to_proto(self) -> jobs_pb2.TestSummary:
        return jobs_pb2.TestSummary(
            passed=self.passed, failed=self.failed, skipped=self.skipped, errors=self.errors,
            files=self.files, problems=list(self.problems),
            failures=[jobs_pb2.TestFailure(name=f.name, classname=f.classname, message=f.message,
                                           file=f.file, line=f.line, error=f.error) for f in self.failures],
        )

    @classmethod
    def from_proto(cls, message: jobs_pb2.TestSummary) -> TestSummary:
        """The summary a peer sent, cut to this side's bounds (a peer is not trusted to keep them)."""
        return cls(
            passed=message.passed, failed=message.failed, skipped=message.skipped, errors=message.errors,
            files=message.files, problems=tuple(_cut(p, MAX_MESSAGE_CHARS) for p in message.problems[:MAX_PROBLEMS]),
            failures=tuple(
                TestFailure(_cut(f.name, MAX_NAME_CHARS), _cut(f.classname, MAX_NAME_CHARS),
                            _cut(f.message, MAX_MESSAGE_CHARS), _cut(f.file, MAX_NAME_CHARS), max(f.line, 0), f.error)
                for f in message.failures[:MAX_FAILURES]
            ),
        )


def _cut(text: str, limit: int) -> str:
    text = text.replace("\0", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_lines(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[:lines])


class _Reader:
    """Accumulates counts and failures over the files of one job."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.passed = self.failed = self.skipped = self.errors = self.files = 0
        self.failures: list[TestFailure] = []
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(_cut(text, MAX_MESSAGE_CHARS))

    def read(self, path: Path, shown: str) -> None:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as err:
            self.problem(f"{shown}: cannot read it ({err.strerror})")
            return
        if len(data) > MAX_FILE_BYTES:
            self.problem(f"{shown}: larger than {show_bytes(MAX_FILE_BYTES)}, not read")
            return
        try:
            root = SafeXml.fromstring(data)
        except DefusedXmlException as err:
            self.problem(f"{shown}: uses XML features refused for safety ({type(err).__name__})")
            return
        except SafeXml.ParseError as err:
            self.problem(f"{shown}: not XML ({err})")
            return
        if root.tag not in ("testsuites", "testsuite"):
            self.problem(f"{shown}: not JUnit XML (its root is <{_cut(str(root.tag), 60)}>)")
            return
        self.files += 1
        for case in root.iter("testcase"):
            self.case(case)

    def case(self, case: Element) -> None:
        outcome = None
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = child
                break
            if child.tag == "skipped":
                outcome = child
        if outcome is None:
            self.passed += 1
            return
        if outcome.tag == "skipped":
            self.skipped += 1
            return
        if outcome.tag == "failure":
            self.failed += 1
        else:
            self.errors += 1
        if len(self.failures) >= MAX_FAILURES:
            return
        message = outcome.get("message") or _first_lines(outcome.text or "") or outcome.get("type") or ""
        line = case.get("line", "")
        self.failures.append(TestFailure(
            name=_cut(case.get("name", "") or "(unnamed)", MAX_NAME_CHARS),
            classname=_cut(case.get("classname", ""), MAX_NAME_CHARS),
            message=_cut(message, MAX_MESSAGE_CHARS),
            file=_cut(self.relative(case.get("file", "")), MAX_NAME_CHARS),
            line=int(line) if line.isdigit() and len(line) < 10 else 0,
            error=outcome.tag == "error",
        ))

    def relative(self, file: str) -> str:
        """A test's file as a checkout-relative path, or "" when it is outside or unusable."""
        if not file or "\0" in file or "\n" in file:
            return ""
        if os.path.isabs(file):
            try:
                file = str(Path(file).relative_to(self.root))
            except ValueError:
                return ""
        file = os.path.normpath(file)
        return "" if file.startswith("..") or file == "." else file

    def summary(self) -> TestSummary:
        return TestSummary(self.passed, self.failed, self.skipped, self.errors, tuple(self.failures),
                           self.files, tuple(self.problems))


def read_one(path: Path, shown: str) -> TestSummary:
    """One file's summary (a problem reading it is in ``problems``), wherever it is: the
    downstream reporting helper's (integration/external/junit.py) use."""
    reader = _Reader(path.parent)
    reader.read(path, shown)
    return reader.summary()


def read_reports(root: Path, patterns: Sequence[str]) -> TestSummary:
    """Read the JUnit files ``patterns`` (globs relative to ``root``, ``**`` spans directories) match.

    Files that resolve outside ``root`` (through symbolic links) are not
    read; a pattern matching nothing and an unreadable file are ``problems``,
    not errors: the job's result is its steps', the report only informs.
    """
    reader = _Reader(root)
    real_root = root.resolve()
    seen: set[Path] = set()
    for pattern in patterns:
        matched = sorted(glob.glob(pattern, root_dir=root, recursive=True))
        files = [m for m in matched if (root / m).is_file()]
        if not files:
            reader.problem(f"{pattern}: no file matched")
        for name in files:
            real = (root / name).resolve()
            if real in seen:
                continue
            seen.add(real)
            if not real.is_relative_to(real_root):
                reader.problem(f"{name}: points outside the checkout, not read")
                continue
            if len(seen) > MAX_FILES:
                reader.problem(f"more than {MAX_FILES} report files: the rest were not read")
                return reader.summary()
            reader.read(real, name)
    return reader.summary()
