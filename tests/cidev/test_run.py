"""``cidev run`` end to end: the installed program, real runner subprocesses, real git.

Each test builds a small git repository in tmp_path holding a workflow (an
example copied in, or one written for the test) and runs ``cidev run``
against it as a subprocess, asserting the exit status and the lines printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
CIDEV = Path(sys.executable).parent / "cidev"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, workflow: str | None = None, example: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    if example:
        shutil.copytree(EXAMPLES / example, path, dirs_exist_ok=True)  # the workflow and its files
    else:
        (path / ".solstice").mkdir()
        (path / ".solstice" / "workflow.kdl").write_text(workflow or "")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


def cidev_run(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CIDEV), "run", *args], cwd=repo, capture_output=True, text=True, timeout=timeout)


def test_passing_example_exits_0_with_step_lines_and_summary(tmp_path):
    repo = make_repo(tmp_path / "py", example="python")
    head = git(repo, "rev-parse", "HEAD")
    out = cidev_run(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert f"on commit {head[:12]} (main)" in lines[0]
    # Said once, whatever the runs_on.
    assert sum("every job runs locally" in line for line in lines) == 1
    assert "ubuntu-22.04" in lines[1]
    for n, name in enumerate(["Interpreter", "Syntax check", "Unit tests"], start=1):
        started = lines.index(f"[test] step {n}/3 {name}: started")
        done = f"[test] step {n}/3 {name}: succeeded in "
        finished = next(i for i, line in enumerate(lines) if line.startswith(done))
        assert started < finished
    # The step's own output sits between its start and finish lines.
    unit_start = lines.index("[test] step 3/3 Unit tests: started")
    assert lines.index("[test] | 1 passed") > unit_start
    assert any(line.startswith("[test] * checked out " + head) for line in lines)
    table = lines[lines.index("JOB   RESULT     DURATION  STEPS  REASON"):]
    assert table[1].split()[:2] == ["test", "succeeded"] and table[1].split()[3] == "3/3"
    assert lines[-1] == "all jobs succeeded"


def test_failing_example_exits_1_and_names_the_failing_step(tmp_path):
    repo = make_repo(tmp_path / "failing", example="failing")
    out = cidev_run(repo)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "[fails] | this step passes" in lines
    assert "[fails] | about to fail" in lines
    assert any(line.startswith("[fails] step 2/3 Fails: failed (exit code 3) in ") for line in lines)
    assert "[fails] step 3/3 Never runs: skipped" in lines
    assert "[fails] | you should not see this" not in lines
    assert any(line.startswith("[fails] job failed") and "step 2 (Fails) failed with exit code 3" in line
               for line in lines)
    row = next(line for line in lines if line.startswith("fails "))
    assert row.split()[:2] == ["fails", "failed"] and row.split()[3] == "1/3"
    assert lines[-1] == "1 of 1 jobs did not succeed"


NEEDS = """\
workflow name="graph" {
  job id="left" runs_on="illumos-stable" {
    step name="Meet" run="touch %(d)s/left; for i in $(seq 300); do [ -f %(d)s/right ] && exit 0; sleep 0.1; done; exit 1"
  }
  job id="right" runs_on="ubuntu-22.04" {
    step name="Meet" run="touch %(d)s/right; for i in $(seq 300); do [ -f %(d)s/left ] && exit 0; sleep 0.1; done; exit 1"
  }
  job id="after" runs_on="ubuntu-22.04" {
    needs "left" "right"
    step name="Both done" run="test -f %(d)s/left && test -f %(d)s/right && echo both were there"
  }
  job id="broken" runs_on="ubuntu-22.04" {
    step name="Break" run="exit 7"
  }
  job id="downstream" runs_on="ubuntu-22.04" {
    needs "broken"
    step name="Never" run="touch %(d)s/downstream-ran"
  }
}
"""


def test_independent_jobs_run_in_parallel_and_needs_are_honoured(tmp_path):
    meet = tmp_path / "meet"
    meet.mkdir()
    repo = make_repo(tmp_path / "graph", NEEDS % {"d": meet})
    out = cidev_run(repo)
    lines = out.stdout.splitlines()
    assert out.returncode == 1, out.stdout + out.stderr  # broken fails, so the run fails
    # left and right each waited for the other's marker: they ran at the same time.
    assert any(line.startswith("[left] step 1/1 Meet: succeeded") for line in lines), out.stdout
    assert any(line.startswith("[right] step 1/1 Meet: succeeded") for line in lines), out.stdout
    # after started only once both of its needs had finished.
    after_start = lines.index("[after] job started (1 steps)")
    assert after_start > next(i for i, line in enumerate(lines) if line.startswith("[left] job succeeded"))
    assert after_start > next(i for i, line in enumerate(lines) if line.startswith("[right] job succeeded"))
    assert "[after] | both were there" in lines
    assert "[downstream] job cancelled: not run: needed job broken did not succeed" in lines
    assert not (meet / "downstream-ran").exists()
    assert "illumos-stable, ubuntu-22.04" in lines[1]
    assert lines[-1] == "2 of 5 jobs did not succeed"


SECRET = """\
workflow {
  job id="use" runs_on="ubuntu-22.04" {
    secret "API_TOKEN"
    step name="Show" run="echo token=$API_TOKEN; echo greeting=$GREETING; echo b64=$(printf %s \\"$API_TOKEN\\" | base64)"
  }
  job id="other" runs_on="ubuntu-22.04" {
    step name="Other" run="echo other ran"
  }
}
"""


def test_secrets_are_masked_env_is_passed_and_job_selection_works(tmp_path):
    repo = make_repo(tmp_path / "secret", SECRET)
    value = "hunter2-very-secret"
    out = cidev_run(repo, "--job", "use", "--secret", f"API_TOKEN={value}", "--env", "GREETING=hello")
    assert out.returncode == 0, out.stdout + out.stderr
    assert value not in out.stdout + out.stderr
    assert "[use] | token=***" in out.stdout.splitlines()
    assert "[use] | greeting=hello" in out.stdout.splitlines()
    b64 = next(line for line in out.stdout.splitlines() if line.startswith("[use] | b64="))
    assert "***" in b64
    assert "[other]" not in out.stdout  # not selected


def test_dirty_builds_the_working_tree_and_head_does_not(tmp_path):
    repo = make_repo(tmp_path / "dirty", 'workflow {\n  job id="j" runs_on="x" {\n'
                                         '    step run="cat note.txt"\n  }\n}\n')
    (repo / "note.txt").write_text("uncommitted note\n")
    clean = cidev_run(repo)
    assert clean.returncode == 1  # HEAD has no note.txt
    dirty = cidev_run(repo, "--dirty")
    assert dirty.returncode == 0, dirty.stdout + dirty.stderr
    assert "[j] | uncommitted note" in dirty.stdout.splitlines()
    assert "working tree snapshot" in dirty.stdout.splitlines()[0]
    assert git(repo, "status", "--porcelain") == "?? note.txt"  # the user's tree and index are untouched


def test_usage_errors_are_one_line(tmp_path):
    repo = make_repo(tmp_path / "u", example="python")
    out = cidev_run(repo, "--job", "nope")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["ERROR: no job 'nope' in the workflow; its jobs are: test"]
    plain = tmp_path / "plain"
    shutil.copytree(EXAMPLES / "python", plain)
    out = cidev_run(plain)
    assert out.returncode == 1
    assert out.stderr.startswith("ERROR: ") and "not inside a git checkout" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("bad", ["NOEQUALS", "1X=2"])
def test_malformed_assignments_are_usage_errors(tmp_path, bad):
    repo = make_repo(tmp_path / "a", example="python")
    out = cidev_run(repo, "--env", bad)
    assert out.returncode == 2
    assert out.stderr.startswith("ERROR: --env")


def test_pipeline_example_honours_needs_and_masks_secrets(tmp_path):
    repo = make_repo(tmp_path / "pipeline", example="pipeline")
    token = "s3cr3t-token-value"
    out = cidev_run(repo, "--secret", f"PKG_REPO_TOKEN={token}", "--secret", "SIGNING_KEY=key-material")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert token not in out.stdout + out.stderr
    assert lines[0].startswith("cidev: running 4 jobs of 'Solstice pipeline' on commit ")

    def at(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    # package needs lint and unit; publish needs package.
    assert at("[package] job started") > max(at("[lint] job succeeded"), at("[unit] job succeeded"))
    assert at("[publish] job started") > at("[package] job succeeded")
    assert "[unit] | running 4 shards" in lines  # job env reaches the step
    assert "[package] | building solstice-1.4.0.p5p" in lines  # step env, in its workdir
    assert f"[publish] | publishing with a token of {len(token)} characters" in lines
    table = lines[lines.index("JOB      RESULT     DURATION  STEPS  REASON"):]
    assert [row.split()[:2] for row in table[1:5]] == [
        ["lint", "succeeded"], ["unit", "succeeded"], ["package", "succeeded"], ["publish", "succeeded"]]
    assert lines[-1] == "all jobs succeeded"


def test_rust_example_without_a_crate_fails_fmt_and_never_builds(tmp_path):
    repo = make_repo(tmp_path / "rust", example="rust")
    git(repo, "rm", "-q", "Cargo.toml")  # the example passes (test_examples.py); without its crate it must not
    git(repo, "commit", "-q", "-m", "no crate")
    out = cidev_run(repo)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("[fmt] step 1/2 Format: failed (exit code ") for line in lines)
    assert "[build] job cancelled: not run: needed job fmt did not succeed" in lines
    assert not any(line.startswith("[build] step") for line in lines)
    assert lines[-1] == "2 of 2 jobs did not succeed"


def test_a_runner_that_dies_ends_its_job_errored(tmp_path):
    # The step kills its own runner (its parent): nothing reports the job's end any more.
    repo = make_repo(tmp_path / "dies", 'workflow {\n  job id="j" runs_on="x" {\n'
                     '    step name="Kill" run="kill -KILL $PPID; sleep 1"\n  }\n}\n')
    out = cidev_run(repo)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("[j] job errored") and "the runner stopped calling in" in line for line in lines), \
        out.stdout
    assert lines[-1] == "1 of 1 jobs did not succeed"


def test_a_missing_workdir_fails_the_step_with_a_line_naming_it(tmp_path):
    repo = make_repo(tmp_path / "wd", """\
workflow {
  job id="a" runs_on="x" {
    step name="In dir" run="pwd" workdir="packaging"
    step name="After" run="echo never"
  }
}
""")
    out = cidev_run(repo)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert "[a] * refused: workdir 'packaging' is not a directory in the checkout" in lines
    assert "[a] step 2/2 After: skipped" in lines
    reason = "step 1 (In dir) could not start: workdir 'packaging' is not a directory in the checkout"
    assert any(line.startswith("[a] job failed in ") and line.endswith(reason) for line in lines)


def test_uncommitted_changes_are_warned_about_once(tmp_path):
    repo = make_repo(tmp_path / "dirty", example="python")
    (repo / "notes.txt").write_text("new\n")
    (repo / ".solstice" / "workflow.kdl").write_text((repo / ".solstice" / "workflow.kdl").read_text() + "\n")
    out = cidev_run(repo)
    assert out.returncode == 0, out.stdout + out.stderr
    warnings = [line for line in out.stdout.splitlines() if "warning" in line]
    head = git(repo, "rev-parse", "HEAD")
    assert warnings == [
        f"cidev: warning: 2 files changed or new in the working tree are not part of this run: it builds "
        f"commit {head[:12]}, with the workflow file as it is on disk; --dirty builds the working tree as it is"]
    clean = cidev_run(make_repo(tmp_path / "clean", example="python"))
    assert "warning" not in clean.stdout
    dirty = cidev_run(repo, "--dirty")
    assert "warning" not in dirty.stdout and "on working tree snapshot" in dirty.stdout.splitlines()[0]
