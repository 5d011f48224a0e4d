"""Every invalid workflow is rejected with exact messages at exact positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.workflow import WorkflowError, WorkflowInvalid, WorkflowNotFound, load_workflow, parse_workflow
from tests.workflow.cases import INVALID


def _errors(text: str, filename: str = "ci.kdl") -> tuple[WorkflowError, ...]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(text, filename)
    return caught.value.errors


def test_corpus_is_large_enough():
    assert len(INVALID) >= 30


@pytest.mark.parametrize(("text", "expected"), INVALID.values(), ids=list(INVALID))
def test_invalid_workflow_reports_exact_errors(text, expected):
    errors = _errors(text)
    assert [str(e) for e in errors] == [f"ci.kdl:{e}" for e in expected]
    for error, line in zip(errors, expected, strict=True):
        position = line.split(": ", 1)[0]
        assert f"{error.line}:{error.col}" == position
        assert error.file == "ci.kdl"


def test_all_errors_are_reported_in_one_pass():
    text = """\
workflow name="ci" colour="blue" {
  job id="Build" runs_on="x" {
    step name="no run"
  }
  job id="lint" runs_on="y" timeout="soon" {
    needs "missing"
    step run="ruff check ." continue_on_error="no"
  }
  job id="lint" runs_on="y"
}
"""
    errors = _errors(text)
    assert [(e.line, e.col, e.path) for e in errors] == [
        (1, 20, "workflow"),
        (2, 7, 'job "Build"'),
        (3, 5, 'job "Build" > step #1'),
        (5, 29, 'job "lint"'),
        (6, 11, 'job "lint" > needs'),
        (7, 47, 'job "lint" > step #1'),
        (9, 3, 'job "lint"'),
        (9, 7, 'job "lint"'),
    ]
    assert errors[-1].message == 'duplicate job id "lint" (first defined at 5:3)'
    assert errors[-2].message == "job has no steps: add at least one step"


def test_error_message_lists_every_error_and_names_the_file():
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow('workflow {\n  job id="A" runs_on="B"\n}\n', "repo/.solstice/workflow.kdl")
    text = str(caught.value)
    assert text.startswith("3 errors in workflow:\n")
    assert "repo/.solstice/workflow.kdl:2:7: job \"A\": invalid job id \"A\"" in text
    assert "repo/.solstice/workflow.kdl:2:14: job \"A\": invalid runs_on label \"B\"" in text
    assert "repo/.solstice/workflow.kdl:2:3: job \"A\": job has no steps" in text


def test_syntax_error_position_past_first_line():
    text = 'workflow {\n  job id="a" runs_on="b" {\n    step run="x" timeout=\n  }\n}\n'
    errors = _errors(text)
    assert len(errors) == 1
    assert (errors[0].line, errors[0].col) == (3, 26)
    assert errors[0].message == "KDL syntax error: Expected value after prop=."


def test_positions_count_characters_not_bytes():
    errors = _errors('workflow name="Zürich ☀" {\n  job id="ä" runs_on="b" { step run="x"; }\n}\n')
    assert [(e.line, e.col) for e in errors] == [(2, 7)]


def test_load_missing_file_is_not_found(tmp_path: Path):
    with pytest.raises(WorkflowNotFound, match="does not exist"):
        load_workflow(tmp_path / "nope.kdl")


def test_load_directory_is_not_found(tmp_path: Path):
    with pytest.raises(WorkflowNotFound, match="is a directory"):
        load_workflow(tmp_path)


def test_load_non_utf8_file_is_invalid(tmp_path: Path):
    path = tmp_path / "workflow.kdl"
    path.write_bytes(b'workflow name="\xff" {}\n')
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    assert [str(e) for e in caught.value.errors] == [f"{path}:1:16: file is not UTF-8 text (bad byte at offset 15)"]
