"""The installed ``cidev`` program as a user runs it: real process, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cidev.helpers import ERROR_LINE, EXAMPLES, INVALID, INVALID_ERRORS, VALID, project, write

CIDEV = Path(sys.executable).parent / "cidev"


def cidev(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CIDEV), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_validate_default_path_in_a_project(tmp_path: Path):
    project(tmp_path, VALID)
    out = cidev("validate", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok .solstice/workflow.kdl (2 jobs, 3 steps)\n"
    assert out.stderr == ""


def test_validate_invalid_file_exits_1_with_every_error(tmp_path: Path):
    write(tmp_path / "ci.kdl", INVALID)
    out = cidev("validate", "ci.kdl", cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines == [f"ci.kdl:{e}" for e in INVALID_ERRORS] + ["invalid ci.kdl (3 errors)"]
    assert all(ERROR_LINE.match(line) for line in lines[:-1])
    assert "Traceback" not in out.stderr


def test_validate_syntax_error_keeps_its_position(tmp_path: Path):
    write(tmp_path / "ci.kdl", 'workflow {\n  job id="a" runs_on="b" {\n    step run="x" timeout=\n  }\n}\n')
    out = cidev("validate", "ci.kdl", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.splitlines()[0] == "ci.kdl:3:26: KDL syntax error: Expected value after prop=."


def test_usage_errors_exit_2(tmp_path: Path):
    missing = cidev("validate", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "ERROR: workflow file '.solstice/workflow.kdl' does not exist\n"
    bad_option = cidev("validate", "--colour", cwd=tmp_path)
    assert bad_option.returncode == 2
    assert "No such option '--colour'" in bad_option.stderr
    assert missing.stdout == bad_option.stdout == ""


def test_validate_every_example_as_json(tmp_path: Path):
    dirs = sorted(str(p) for p in EXAMPLES.iterdir() if p.is_dir())
    out = cidev("validate", "--format", "json", *dirs, cwd=tmp_path)
    assert out.returncode == 0, out.stdout
    doc = json.loads(out.stdout)
    assert doc["valid"] is True
    assert len(doc["files"]) == len(dirs) >= 4
    assert all(f["valid"] and f["jobs"] >= 1 and f["errors"] == [] for f in doc["files"])


def test_inspect_text_and_json(tmp_path: Path):
    text = cidev("inspect", str(EXAMPLES / "pipeline"), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "publish  illumos-stable  package     15m      PKG_REPO_TOKEN, SIGNING_KEY  1" in text.stdout
    assert text.stdout.endswith("  stage 1: lint, unit\n  stage 2: package\n  stage 3: publish\n")
    as_json = cidev("inspect", "--format", "json", str(EXAMPLES / "rust"), cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["stages"] == [["fmt"], ["build"]]
    assert [(j["id"], j["runs_on"], len(j["steps"])) for j in doc["jobs"]] == [
        ("fmt", "ubuntu-22.04", 2),
        ("build", "illumos-stable", 3),
    ]
