"""JUnit XML to a bounded TestSummary: counts, failing tests, and files that must not be trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import junit
from common.junit import TestFailure, TestSummary, read_reports

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="outer">
    <testsuite name="inner">
      <testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" line="3"/>
      <testcase classname="tests.test_math" name="test_div" file="{root}/tests/test_math.py" line="12">
        <failure message="ZeroDivisionError: division by zero">Traceback (most recent call last)</failure>
      </testcase>
    </testsuite>
    <testcase classname="tests.test_io" name="test_read" file="/elsewhere/x.py" line="9">
      <error>fixture 'tmp' not found
E   second line</error>
    </testcase>
    <testcase classname="tests.test_io" name="test_later"><skipped message="later"/></testcase>
  </testsuite>
</testsuites>
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_counts_and_failures_with_checkout_relative_files(tmp_path: Path):
    _write(tmp_path / "build" / "results" / "a.xml", REPORT.format(root=tmp_path))
    _write(tmp_path / "build" / "results" / "deep" / "b.xml",
           '<testsuite><testcase name="t1"/><testcase name="t2"><failure/></testcase></testsuite>')
    summary = read_reports(tmp_path, ["build/results/**/*.xml"])
    assert (summary.passed, summary.failed, summary.errors, summary.skipped, summary.files) == (2, 2, 1, 1, 2)
    assert summary.counts_text() == "2 passed, 2 failed, 1 error, 1 skipped"
    div, read, t2 = summary.failures
    assert div == TestFailure("test_div", "tests.test_math", "ZeroDivisionError: division by zero",
                              "tests/test_math.py", 12, False)
    # No message attribute: the first lines of the text; a file outside the checkout is dropped.
    assert (read.message, read.file, read.line, read.error) == ("fixture 'tmp' not found\nE   second line", "", 9, True)
    assert (t2.title, t2.message) == ("t2", "")
    assert summary.problems == ()


def test_xml_bombs_and_external_entities_are_refused_not_expanded(tmp_path: Path):
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            "<testsuite><testcase name=\"&lol2;\"/></testsuite>")
    external = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                '<testsuite><testcase name="&e;"/></testsuite>')
    _write(tmp_path / "r" / "bomb.xml", bomb)
    _write(tmp_path / "r" / "external.xml", external)
    _write(tmp_path / "r" / "plain.xml", "<html><body/></html>")
    _write(tmp_path / "r" / "broken.xml", "<testsuite><testcase")
    summary = read_reports(tmp_path, ["r/*.xml"])
    assert summary.total == 0 and summary.files == 0
    assert summary.problems[0].startswith("r/bomb.xml: uses XML features refused for safety")
    assert summary.problems[1].startswith("r/broken.xml: not XML")
    assert summary.problems[2].startswith("r/external.xml: uses XML features refused for safety")
    assert summary.problems[3] == "r/plain.xml: not JUnit XML (its root is <html>)"


def test_files_outside_the_checkout_too_big_or_missing_are_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "checkout"
    outside = _write(tmp_path / "secret.xml", "<testsuite><testcase name='x'/></testsuite>")
    (root / "r").mkdir(parents=True)
    (root / "r" / "link.xml").symlink_to(outside)
    _write(root / "r" / "big.xml", "<testsuite>" + "<testcase name='x'/>" * 100 + "</testsuite>")
    monkeypatch.setattr(junit, "MAX_FILE_BYTES", 1000)
    summary = read_reports(root, ["r/*.xml", "nothing/*.xml"])
    assert summary.files == 0 and summary.total == 0
    assert summary.problems == ("r/big.xml: larger than 1000 bytes, not read", "r/link.xml: points outside the checkout, not read",
                                "nothing/*.xml: no file matched")


def test_failures_and_their_text_are_bounded(tmp_path: Path):
    cases = "".join(f'<testcase name="t{i}"><failure message="{"m" * 5000}"/></testcase>' for i in range(200))
    _write(tmp_path / "r.xml", f"<testsuite>{cases}</testsuite>")
    summary = read_reports(tmp_path, ["r.xml"])
    assert summary.failed == 200
    assert len(summary.failures) == junit.MAX_FAILURES
    assert all(len(f.message) == junit.MAX_MESSAGE_CHARS and f.message.endswith("…") for f in summary.failures)


def test_proto_round_trip_and_a_peer_cannot_exceed_the_bounds():
    summary = TestSummary(3, 1, 0, 0, (TestFailure("t", "c", "boom", "a.py", 4),), 1, ("x: no file matched",))
    assert TestSummary.from_proto(summary.to_proto()) == summary
    big = TestSummary(failed=500, failures=tuple(TestFailure("n" * 1000, message="m" * 9000) for _ in range(500)))
    back = TestSummary.from_proto(big.to_proto())
    assert len(back.failures) == junit.MAX_FAILURES and back.failed == 500
    assert len(back.failures[0].name) == junit.MAX_NAME_CHARS
    assert len(back.failures[0].message) == junit.MAX_MESSAGE_CHARS
