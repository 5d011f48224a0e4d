"""``cidev inspect`` in-process: the text report, the JSON document and the stages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cidev.helpers import EXAMPLES, INVALID, INVALID_ERRORS, VALID, invoke, project, write

# Fan-out and fan-in: setup -> (unit, lint) -> package -> publish, plus an
# independent docs job; every column of the report has something to show.
PIPELINE = """\
workflow {
  env LANG="C.UTF-8"
  job id="package" runs_on="illumos-stable" timeout="1h" {
    needs "unit" "lint"
    env PKG="solstice"
    step name="Build" workdir="pkg" {
      env V="1.0" ARCH="amd64"
      run r#"
        make package
        make sign
      "#
    }
  }
  job id="setup" runs_on="ubuntu-22.04" {
    step run="echo setup"
  }
  job id="unit" runs_on="illumos-stable" timeout="30m" {
    needs "setup"
    step name="Tests" run="make test" timeout="20m" continue_on_error=true
  }
  job id="lint" runs_on="ubuntu-22.04" {
    needs "setup"
    step run="echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  }
  job id="publish" runs_on="illumos-stable" timeout="15m" {
    needs "package"
    secret "TOKEN" "KEY"
    step name="Publish" run="./publish"
  }
  job id="docs" runs_on="ubuntu-22.04" {
    step name="Docs" run="make docs"
  }
}
"""


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_text_report_shows_jobs_steps_and_stages(tmp_path: Path):
    path = write(tmp_path / "ci.kdl", PIPELINE)
    result = invoke("inspect", str(path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"workflow (unnamed)  ({path})"
    assert lines[1] == "env: LANG"
    table = lines[lines.index("") + 1 :][:7]
    assert [_cells(row) for row in table] == [
        ["JOB", "RUNS ON", "NEEDS", "TIMEOUT", "SECRETS", "STEPS"],
        ["package", "illumos-stable", "unit, lint", "1h", "-", "1"],
        ["setup", "ubuntu-22.04", "-", "-", "-", "1"],
        ["unit", "illumos-stable", "setup", "30m", "-", "1"],
        ["lint", "ubuntu-22.04", "setup", "-", "-", "1"],
        ["publish", "illumos-stable", "package", "15m", "TOKEN, KEY", "1"],
        ["docs", "ubuntu-22.04", "-", "-", "-", "1"],
    ]
    package = lines.index("job package:")
    assert lines[package + 1] == "  env: PKG"
    assert _cells(lines[package + 2]) == ["#", "STEP", "TIMEOUT", "ON ERROR", "WORKDIR", "ENV", "RUN"]
    # A multi-line script shows its first line and "..." for the rest.
    assert _cells(lines[package + 3]) == ["1.", "Build", "-", "stop", "pkg", "V, ARCH", "make package ..."]
    unit = lines.index("job unit:")
    assert _cells(lines[unit + 2]) == ["1.", "Tests", "20m", "continue", "-", "-", "make test"]
    lint = lines.index("job lint:")
    long_run = _cells(lines[lint + 2])[-1]
    assert long_run.endswith(" ...") and len(long_run) == 61
    assert lines[-5:] == [
        "execution order:",
        "  stage 1: setup, docs",
        "  stage 2: unit, lint",
        "  stage 3: package",
        "  stage 4: publish",
    ]


def test_json_document(tmp_path: Path):
    path = write(tmp_path / "ci.kdl", PIPELINE)
    result = invoke("inspect", "--format", "json", str(path))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["path"] == str(path)
    assert doc["name"] is None
    assert doc["env"] == {"LANG": "C.UTF-8"}
    assert doc["stages"] == [["setup", "docs"], ["unit", "lint"], ["package"], ["publish"]]
    jobs = {job["id"]: job for job in doc["jobs"]}
    assert list(jobs) == ["package", "setup", "unit", "lint", "publish", "docs"]
    package = jobs["package"]
    assert {k: package[k] for k in ("runs_on", "needs", "secrets", "timeout", "timeout_seconds", "env")} == {
        "runs_on": "illumos-stable",
        "needs": ["unit", "lint"],
        "secrets": [],
        "timeout": "1h",
        "timeout_seconds": 3600.0,
        "env": {"PKG": "solstice"},
    }
    assert package["steps"] == [
        {
            "name": "Build",
            "title": "Build",
            "run": "\n        make package\n        make sign\n      ",
            "workdir": "pkg",
            "timeout": None,
            "timeout_seconds": None,
            "continue_on_error": False,
            "env": {"V": "1.0", "ARCH": "amd64"},
        }
    ]
    assert jobs["publish"]["secrets"] == ["TOKEN", "KEY"]
    assert jobs["unit"]["steps"][0]["continue_on_error"] is True
    assert jobs["unit"]["steps"][0]["timeout_seconds"] == 1200.0
    # A step without a name is titled by the first line of its script.
    assert jobs["setup"]["steps"][0]["name"] is None
    assert jobs["setup"]["steps"][0]["title"] == "echo setup"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_stages_of_every_example_are_a_parallel_execution_order(example: str):
    result = invoke("inspect", "--format", "json", str(EXAMPLES / example))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    needs = {job["id"]: set(job["needs"]) for job in doc["jobs"]}
    placed = [job_id for stage in doc["stages"] for job_id in stage]
    assert sorted(placed) == sorted(needs), "every job is in exactly one stage"
    done: set[str] = set()
    for n, stage in enumerate(doc["stages"]):
        for job_id in stage:
            assert needs[job_id] <= done, f"{job_id} runs before what it needs"
            # Earliest stage: something it needs ran in the stage just before.
            if n:
                assert needs[job_id] & set(doc["stages"][n - 1]), f"{job_id} could run earlier"
        done |= set(stage)


def test_pipeline_example_stages():
    result = invoke("inspect", "--format", "json", str(EXAMPLES / "pipeline"))
    assert json.loads(result.stdout)["stages"] == [["lint", "unit"], ["package"], ["publish"]]


def test_default_path_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project(tmp_path, VALID)
    monkeypatch.chdir(tmp_path)
    result = invoke("inspect")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "workflow demo  (.solstice/workflow.kdl)"
    assert result.stdout.splitlines()[-2:] == ["execution order:", "  stage 1: build, lint"]


def test_invalid_workflow_prints_errors_to_stderr_and_exits_1(tmp_path: Path):
    path = write(tmp_path / "ci.kdl", INVALID)
    result = invoke("inspect", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"{path}:{e}" for e in INVALID_ERRORS] + [f"invalid {path} (3 errors)"]


def test_missing_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("inspect")
    assert result.exit_code == 2
    assert result.stderr == "ERROR: workflow file '.solstice/workflow.kdl' does not exist\n"


def test_two_paths_are_a_usage_error(tmp_path: Path):
    a = write(tmp_path / "a.kdl", VALID)
    result = invoke("inspect", str(a), str(a))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Got unexpected extra argument" in result.stderr
