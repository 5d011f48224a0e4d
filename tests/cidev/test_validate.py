"""``cidev validate`` in-process: exit codes, error lines, paths and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cidev.helpers import ERROR_LINE, EXAMPLES, INVALID, INVALID_ERRORS, VALID, invoke, project, write
from tests.workflow.cases import INVALID as CORPUS


def test_default_path_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project(tmp_path, VALID)
    monkeypatch.chdir(tmp_path)
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok .solstice/workflow.kdl (2 jobs, 3 steps)\n"
    assert result.stderr == ""


def test_default_path_missing_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("validate")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "ERROR: workflow file '.solstice/workflow.kdl' does not exist\n"


def test_invalid_file_lists_every_error_with_its_position(tmp_path: Path):
    path = write(tmp_path / "ci.kdl", INVALID)
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == [f"{path}:{e}" for e in INVALID_ERRORS] + [f"invalid {path} (3 errors)"]
    for line in lines[:-1]:
        match = ERROR_LINE.match(line)
        assert match, line
        assert match["file"] == str(path)


def test_syntax_error_keeps_its_position(tmp_path: Path):
    path = write(tmp_path / "ci.kdl", 'workflow {\n  job id= runs_on="b" {\n    step run="x"\n  }\n}\n')
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == f"{path}:2:10: KDL syntax error: Expected value after prop=."


def test_several_files_are_all_reported_in_order(tmp_path: Path):
    good = write(tmp_path / "good.kdl", VALID)
    bad = write(tmp_path / "bad.kdl", INVALID)
    also_good = write(tmp_path / "also.kdl", VALID)
    result = invoke("validate", str(good), str(bad), str(also_good))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"ok {good} (2 jobs, 3 steps)"
    assert lines[1:4] == [f"{bad}:{e}" for e in INVALID_ERRORS]
    assert lines[4] == f"invalid {bad} (3 errors)"
    assert lines[5] == f"ok {also_good} (2 jobs, 3 steps)"
    assert len(lines) == 6


def test_all_valid_files_exit_zero(tmp_path: Path):
    paths = [str(write(tmp_path / f"w{n}.kdl", VALID)) for n in range(3)]
    result = invoke("validate", *paths)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"ok {p} (2 jobs, 3 steps)" for p in paths]


def test_a_missing_file_among_several_is_a_usage_error_before_any_report(tmp_path: Path):
    good = write(tmp_path / "good.kdl", VALID)
    bad = write(tmp_path / "bad.kdl", INVALID)
    result = invoke("validate", str(good), str(bad), str(tmp_path / "typo.kdl"))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"ERROR: workflow file '{tmp_path / 'typo.kdl'}' does not exist\n"


@pytest.mark.parametrize("inside", ["", ".solstice"])
def test_a_directory_argument_finds_its_workflow(tmp_path: Path, inside: str):
    project(tmp_path / "repo", VALID)
    result = invoke("validate", str(tmp_path / "repo" / inside))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok {tmp_path / 'repo' / '.solstice' / 'workflow.kdl'} (2 jobs, 3 steps)\n"


def test_a_directory_without_a_workflow_is_a_usage_error(tmp_path: Path):
    result = invoke("validate", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"ERROR: '{tmp_path}' is a directory without a .solstice/workflow.kdl file\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus", "ci.kdl"], "Error: No such option '--bogus'."),
        (["--format", "yaml", "ci.kdl"], "Error: Invalid value for '--format': 'yaml' is not one of 'text', 'json'."),
        (["--format"], "Error: Option '--format' requires an argument."),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path / "ci.kdl", VALID)
    monkeypatch.chdir(tmp_path)
    result = invoke("validate", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == message


def test_non_utf8_file_is_invalid_not_a_crash(tmp_path: Path):
    path = tmp_path / "ci.kdl"
    path.write_bytes(b'workflow name="caf\xe9" {}\n')
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == f"{path}:1:19: file is not UTF-8 text (bad byte at offset 18)"


def test_json_output_for_valid_and_invalid_files(tmp_path: Path):
    good = write(tmp_path / "good.kdl", VALID)
    bad = write(tmp_path / "bad.kdl", INVALID)
    result = invoke("validate", "--format", "json", str(good), str(bad))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert [(f["path"], f["valid"], f["jobs"]) for f in doc["files"]] == [(str(good), True, 2), (str(bad), False, 0)]
    assert doc["files"][0]["errors"] == []
    errors = doc["files"][1]["errors"]
    assert [f"{e['line']}:{e['col']}: {e['node']}: {e['message']}" for e in errors] == INVALID_ERRORS
    assert {e["file"] for e in errors} == {str(bad)}
    assert [e["text"] for e in errors] == [f"{bad}:{e}" for e in INVALID_ERRORS]
    assert all(isinstance(e["line"], int) and isinstance(e["col"], int) for e in errors)


def test_json_output_when_everything_is_valid(tmp_path: Path):
    good = write(tmp_path / "good.kdl", VALID)
    result = invoke("validate", "--format", "json", str(good))
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "valid": True,
        "files": [{"path": str(good), "valid": True, "jobs": 2, "errors": []}],
    }


def test_whole_invalid_corpus_in_one_run_reports_every_case_exactly(tmp_path: Path):
    # The CLI must carry each error's exact position and message to JSON,
    # whatever the kind of error, with many files in one invocation.
    paths = {case: write(tmp_path / f"{case}.kdl", text) for case, (text, _) in CORPUS.items()}
    result = invoke("validate", "--format", "json", *map(str, paths.values()))
    assert result.exit_code == 1
    files = json.loads(result.stdout)["files"]
    assert [f["path"] for f in files] == [str(p) for p in paths.values()]
    for (case, (_, expected)), reported in zip(CORPUS.items(), files, strict=True):
        assert reported["valid"] is False, case
        got = [f"{e['line']}:{e['col']}: " + (f"{e['node']}: " if e["node"] else "") + e["message"]
               for e in reported["errors"]]
        assert got == expected, case


def test_every_example_validates():
    dirs = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
    assert {d.name for d in dirs} >= {"rust", "python", "pipeline", "failing"}
    result = invoke("validate", "--format", "json", *map(str, dirs))
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["valid"] is True
    assert [Path(f["path"]).parts[-3] for f in doc["files"]] == [d.name for d in dirs]
