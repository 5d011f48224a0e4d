"""``ciadm`` against a real ``solstice serve``: every command, tables and ``--json``, errors and exit codes."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.drivers.local import process_start_time
from tests.procs import host_pid, job_namespace
from tests.singlenode.harness import BIN, ServeProcess, ciadm, git_repo
from tests.waiting import wait_until

PASSING = """\
workflow name="passing" {
  job id="build" runs_on="ubuntu-22.04" {
    step name="Build" run="echo building; echo built"
  }
  job id="test" runs_on="illumos-stable" {
    needs "build"
    step name="Test" run="echo testing"
  }
}
"""

FAILING = """\
workflow name="failing" {
  job id="fails" runs_on="ubuntu-22.04" {
    step name="Works" run="echo this step passes"
    step name="Fails" run="echo about to fail >&2; exit 3"
  }
}
"""

SLOW = """\
workflow name="slow" {
  job id="slow" runs_on="ubuntu-22.04" {
    step name="Wait" run="echo started pid=$$; sleep 120; echo never"
  }
}
"""

TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve") / "data") as serving:
        yield serving


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", PASSING)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert TRACEBACK not in stderr
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), stderr
    return lines[0]


def test_submit_follow_status_and_list(node: ServeProcess, repo: Path) -> None:
    submitted = node.ciadm("submit", cwd=repo)
    assert submitted.returncode == 0, submitted.stderr
    assert re.search(r"^submitted 2 jobs of run run-[0-9a-f]{32} at [0-9a-f]{12} of ", submitted.stdout, re.MULTILINE)
    ids = re.findall(r"^(job-[0-9a-f]{32})\s", submitted.stdout, re.MULTILINE)
    assert len(ids) == 2
    assert f"follow with: ciadm logs --follow {ids[0]}" in submitted.stdout
    build, test = (node.status(i) for i in ids)
    assert (build["key"], test["key"], test["needs"]) == ("build", "test", ["build"])

    follow = node.ciadm("logs", "--follow", test["job_id"], timeout=90)
    assert follow.returncode == 0, follow.stderr
    assert "testing" in follow.stdout.splitlines() and "## step 1: Test" in follow.stdout
    done = node.status(build["job_id"])
    assert done["state"] == "succeeded" and done["driver"] == "local" and done["steps"][0]["exit_code"] == 0

    table = node.ciadm("status", build["job_id"])
    assert table.returncode == 0
    assert re.search(r"^state\s+succeeded$", table.stdout, re.MULTILINE)
    assert re.search(r"^driver\s+local$", table.stdout, re.MULTILINE)

    run = test["run_id"]
    listed = node.ciadm_json("list", "--run", run)
    assert sorted(j["job_id"] for j in listed) == sorted(ids)
    assert [j["job_id"] for j in node.ciadm_json("list", "--run", run, "--limit", "1")] == [test["job_id"]]
    assert node.ciadm_json("list", "--run", run, "--state", "failed") == []
    assert len(node.ciadm_json("list", "--repo", str(repo), "--ref", "refs/heads/main", "--run", run)) == 2
    assert node.ciadm_json("list", "--ref", "refs/heads/nope", "--run", run) == []
    host = node.ciadm_json("hosts")[0]["name"]
    assert len(node.ciadm_json("list", "--host", host, "--run", run)) == 2
    text = node.ciadm("list", "--run", run)
    assert text.stdout.splitlines()[0].split()[:3] == ["JOB", "KEY", "STATE"]
    assert node.ciadm("list", "--state", "cancelled", "--repo", "/nowhere").stdout.strip() == "no jobs"


def test_a_failing_job_fails_follow_and_retry_makes_a_new_attempt(node: ServeProcess, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "failing", FAILING)
    [job] = node.ciadm_json("submit", cwd=repo)
    follow = node.ciadm("logs", "--follow", job["job_id"], timeout=90)
    assert follow.returncode == 1
    assert "this step passes" in follow.stdout and "about to fail" in follow.stdout
    assert f"job {job['job_id']} failed" in follow.stderr
    failed = node.status(job["job_id"])
    assert failed["state"] == "failed" and [s["exit_code"] for s in failed["steps"]] == [0, 3]

    retried = node.ciadm("retry", job["job_id"])
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"job {job['job_id']} retried: attempt 2 is queued"
    again = node.wait_state(job["job_id"], "failed")
    assert again["attempt"] == 2
    assert node.ciadm("logs", job["job_id"]).stdout.count("about to fail") == 1  # the current attempt's log


def test_cancel_mid_run_ends_the_job_and_its_processes(node: ServeProcess, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "slow", SLOW)
    [job] = node.ciadm_json("submit", cwd=repo)
    job_id = job["job_id"]

    def started() -> int | None:
        status, text = node.get(f"/jobs/{job_id}/log")
        found = re.search(r"^started pid=(\d+)$", text, re.MULTILINE) if status == 200 else None
        return int(found.group(1)) if found else None

    ns_pid = wait_until(started, 60, "the slow step to start")
    [pid_file] = list((node.data_dir / "vms").glob("*/pid"))
    runner_pid = json.loads(pid_file.read_text())["pid"]
    # A contained job numbers its processes in its own PID namespace: find the step on the host.
    namespace = job_namespace(runner_pid)
    assert namespace is not None
    step_pid = host_pid(namespace, ns_pid)
    assert step_pid is not None
    assert process_start_time(runner_pid) is not None and process_start_time(step_pid) is not None

    cancelled = node.ciadm("cancel", job_id, "--reason", "not needed")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"job {job_id} cancelled: attempt 1 is ")
    final = node.wait_state(job_id, "cancelled")
    assert "not needed" in final["reason"]
    # The step was stopped by the cancel: it shows cancelled, not failed with the signal's exit code.
    wait_until(lambda: node.status(job_id)["steps"][0]["state"] == "cancelled", 60, "the step to be cancelled")
    assert re.search(r"^1\s+Wait\s+cancelled\s+-\s", node.ciadm("status", job_id).stdout, re.MULTILINE)
    wait_until(lambda: process_start_time(runner_pid) is None, 60, "the runner process to be gone")
    wait_until(lambda: process_start_time(step_pid) is None, 60, "the step's shell to be gone")
    wait_until(lambda: not pid_file.parent.exists(), 60, "the VM directory to be destroyed")
    assert "never" not in node.get(f"/jobs/{job_id}/log")[1]


def test_drain_holds_new_jobs_until_undrain(node: ServeProcess, repo: Path) -> None:
    [host] = node.ciadm_json("hosts")
    assert host["labels"] == ["*"] and host["capacity"] == 4 and host["alive"] is True
    table = node.ciadm("hosts").stdout.splitlines()
    assert table[0].split()[:3] == ["HOST", "LABELS", "CAPACITY"] and table[1].split()[:2] == [host["name"], "*"]

    drained = node.ciadm("drain", host["name"])
    try:
        assert re.fullmatch(rf"host {host['name']}: draining, \d+ running", drained.stdout.strip())
        assert node.ciadm_json("hosts")[0]["draining"] is True
        jobs = node.ciadm_json("submit", "--job", "build", cwd=repo)
        submitted = time.monotonic()
        assert [j["key"] for j in jobs] == ["build"]

        def heartbeat_since_submit() -> bool:
            elapsed = time.monotonic() - submitted  # measured before the query: a smaller age is a later beat
            return node.ciadm_json("hosts")[0]["heartbeat_age_seconds"] < elapsed

        # A negative cannot be awaited; a heartbeat after the submit gives the node's intake
        # (free slots, store watch) several chances to take the job, and it must not have.
        wait_until(heartbeat_since_submit, 30, "a heartbeat after the submit")
        assert node.status(jobs[0]["job_id"])["state"] == "queued"
    finally:
        undrained = node.ciadm_json("undrain", host["name"])
    assert undrained["draining"] is False
    node.wait_state(jobs[0]["job_id"], "succeeded")


def test_follow_of_a_job_cancelled_before_it_started_prints_its_end(node: ServeProcess, repo: Path) -> None:
    [host] = node.ciadm_json("hosts")
    node.ciadm_json("drain", host["name"])  # the job stays queued until it is cancelled
    try:
        [job] = node.ciadm_json("submit", "--job", "build", cwd=repo)
        job_id = job["job_id"]
        with ThreadPoolExecutor(1) as pool:
            # Following while it is queued or after it ended: either way the same one line.
            waiting = pool.submit(node.ciadm, "logs", "--follow", job_id, timeout=90)
            assert node.ciadm("cancel", job_id, "--reason", "never mind").returncode == 0
            during = waiting.result()
        after = node.ciadm("logs", "--follow", job_id)
    finally:
        node.ciadm_json("undrain", host["name"])
    for done in (during, after):
        assert done.returncode == 1, done.stderr  # as for any job that ended without succeeding
        assert done.stdout == ""
        assert done.stderr.strip().splitlines() == [f"job {job_id} cancelled: never mind"]
    assert node.status(job_id)["state"] == "cancelled"


def test_unknown_job_is_one_line_and_exit_1(node: ServeProcess) -> None:
    for args in (("status", "job-nosuch"), ("logs", "job-nosuch"), ("logs", "--follow", "job-nosuch"),
                 ("cancel", "job-nosuch"), ("retry", "job-nosuch")):
        done = node.ciadm(*args)
        assert done.returncode == 1, args
        assert "job-nosuch" in one_error_line(done.stderr)
    assert node.ciadm("drain", "no-such-host").returncode == 1


def test_refused_requests_are_one_line(node: ServeProcess, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "slow", SLOW)
    [job] = node.ciadm_json("submit", cwd=repo)
    try:
        node.wait_state(job["job_id"], "running", "provisioning")
        done = node.ciadm("retry", job["job_id"])
        assert done.returncode == 1
        one_error_line(done.stderr)
    finally:
        node.ciadm("cancel", job["job_id"])
    node.wait_state(job["job_id"], "cancelled")
    bad = node.ciadm("submit", "--job", "nope", cwd=repo)
    assert bad.returncode == 2 and "nope" in one_error_line(bad.stderr)


def test_every_json_output_parses(node: ServeProcess, repo: Path) -> None:
    [job] = node.ciadm_json("submit", "--job", "build", cwd=repo)
    node.wait_state(job["job_id"], "succeeded")
    host = node.ciadm_json("hosts")[0]["name"]
    for args in (("status", job["job_id"]), ("list",), ("hosts",), ("retry", job["job_id"]),
                 ("drain", host), ("undrain", host)):
        assert node.ciadm_json(*args)  # parses and is not empty
    node.wait_state(job["job_id"], "succeeded")
    lines = node.ciadm("logs", "--json", job["job_id"]).stdout.splitlines()
    chunks = [json.loads(line) for line in lines]
    assert any(c["text"] == "built" and c["stream"] == "stdout" for c in chunks)


def test_unreachable_orchestrator_is_exit_3() -> None:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        for args in (("list",), ("status", "job-x"), ("hosts", "--json"), ("logs", "--follow", "job-x"),
                     ("cancel", "job-x"), ("drain", "h")):
            done = ciadm(address, "--timeout", "3", *args)
            assert done.returncode == 3, (args, done.stderr)
            assert f"cannot reach the orchestrator at {address}" in one_error_line(done.stderr)


NOISY = r"""workflow name="noisy" {
  job id="noisy" runs_on="ubuntu-22.04" {
    step name="Noise" run=r#"printf '\033[31mred\033[0m \033]0;owned\007 \033]52;c;ZXZpbA==\007 \033[2J over\rwrite\n'"#
  }
}
"""


def logs_on_a_terminal(node: ServeProcess, *args: str) -> bytes:
    """``ciadm logs`` with stdout on a pty: what it wrote there."""
    master, slave = pty.openpty()
    env = {**os.environ, "SOLSTICE_ORCHESTRATOR": node.admin}
    proc = subprocess.Popen([str(BIN / "ciadm"), "logs", *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    raw = b""
    try:
        while chunk := _read_pty(master):
            raw += chunk
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return raw


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the writer has gone
        return b""


def test_logs_escape_control_bytes_on_a_terminal_only(node: ServeProcess, tmp_path: Path) -> None:
    [job] = node.ciadm_json("submit", cwd=git_repo(tmp_path / "noisy", NOISY))
    node.wait_state(job["job_id"], "succeeded")
    shown = logs_on_a_terminal(node, job["job_id"])
    # colours pass; the title (OSC 0), clipboard (OSC 52), clear screen and carriage return are shown, not done
    assert b"\x1b[31mred\x1b[0m \\x1b]0;owned\\x07 \\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J over\\x0dwrite" in shown
    assert b"\x1b]" not in shown and b"\x07" not in shown and b"\x1b[2J" not in shown
    # piped (a file, a script): the bytes the job printed
    piped = subprocess.run([str(BIN / "ciadm"), "logs", job["job_id"]], capture_output=True, timeout=60,
                           env={**os.environ, "SOLSTICE_ORCHESTRATOR": node.admin})
    assert b"\x1b[31mred\x1b[0m \x1b]0;owned\x07 \x1b]52;c;ZXZpbA==\x07 \x1b[2J over\rwrite\n" in piped.stdout
    assert b"\x1b]0;owned\x07" in logs_on_a_terminal(node, "--raw", job["job_id"])


def test_cancel_of_a_finished_job_says_so_and_exits_1(node: ServeProcess, repo: Path) -> None:
    [job] = node.ciadm_json("submit", "--job", "build", cwd=repo)
    node.wait_state(job["job_id"], "succeeded")
    for args in (("cancel", job["job_id"]), ("cancel", job["job_id"], "--json")):
        refused = node.ciadm(*args)
        assert refused.returncode == 1 and refused.stdout == ""
        assert one_error_line(refused.stderr) == (
            f"ERROR: job {job['job_id']} already ended succeeded; nothing to cancel")
    assert node.status(job["job_id"])["state"] == "succeeded"  # a finished job stays finished


def test_follow_with_names_the_job_asked_for(node: ServeProcess, repo: Path) -> None:
    submitted = node.ciadm("submit", "--job", "test", cwd=repo)  # "test" needs "build", listed first
    assert submitted.returncode == 0, submitted.stderr
    keys = dict(re.findall(r"^(job-[0-9a-f]{32})\s+(\w+)\s", submitted.stdout, re.MULTILINE))
    [asked] = [job_id for job_id, key in keys.items() if key == "test"]
    assert submitted.stdout.splitlines()[-1] == f"follow with: ciadm logs --follow {asked}"

    followed = node.ciadm("submit", "--job", "test", "--follow", cwd=repo, timeout=90)
    assert followed.returncode == 0, followed.stderr
    [line] = [line for line in followed.stdout.splitlines() if line.startswith("following ")]
    job_id = line.removeprefix("following test (").removesuffix("):")
    assert node.status(job_id)["key"] == "test"
    assert "testing" in followed.stdout.splitlines() and "building" not in followed.stdout
    assert followed.stderr.strip() == f"job {job_id} succeeded"

    failing = node.ciadm("submit", "--follow", cwd=git_repo(repo.parent / "failing", FAILING), timeout=90)
    assert failing.returncode == 1 and "about to fail" in failing.stdout
    assert failing.stderr.strip().endswith("failed: step 2 (Fails) failed with exit code 3")


def test_status_shows_every_attempt(node: ServeProcess, tmp_path: Path) -> None:
    [job] = node.ciadm_json("submit", cwd=git_repo(tmp_path / "failing", FAILING))
    node.wait_state(job["job_id"], "failed")
    assert node.ciadm("retry", job["job_id"]).returncode == 0
    node.wait_state(job["job_id"], "failed")
    status = node.status(job["job_id"])
    assert [(a["attempt"], a["state"], a["reason"]) for a in status["attempts"]] == [
        (1, "failed", "step 2 (Fails) failed with exit code 3"),
        (2, "failed", "step 2 (Fails) failed with exit code 3"),
    ]
    host = node.ciadm_json("hosts")[0]["name"]
    assert all(a["host"] == host and a["started_at"] and a["finished_at"] for a in status["attempts"])
    table = node.ciadm("status", job["job_id"]).stdout.splitlines()
    header = table.index(next(line for line in table if line.startswith("ATTEMPT")))
    assert table[header].split() == ["ATTEMPT", "HOST", "QUEUED", "STARTED", "FINISHED", "HOW", "IT", "ENDED"]
    rows = [line.split(None, 5) for line in table[header + 1:]]
    assert [(r[0], r[1], r[5]) for r in rows] == [
        ("1", host, "failed: step 2 (Fails) failed with exit code 3"),
        ("2", host, "failed: step 2 (Fails) failed with exit code 3"),
    ]
    # each attempt's own log (the second says the same: it ran the same steps)
    for attempt in ("1", "2"):
        shown = node.ciadm("logs", "--attempt", attempt, job["job_id"])
        assert shown.returncode == 0 and shown.stdout.count("about to fail") == 1, shown.stderr
    beyond = node.ciadm("logs", "--attempt", "3", job["job_id"])
    assert beyond.returncode == 1 and "has attempts 1..2, not 3" in one_error_line(beyond.stderr)


def test_gc_dry_run_shows_what_would_go_and_deletes_nothing(node: ServeProcess, tmp_path: Path) -> None:
    [job] = node.ciadm_json("submit", cwd=git_repo(tmp_path / "failing", FAILING))
    node.wait_state(job["job_id"], "failed")
    report = node.ciadm_json("gc", "--dry-run", "--older-than", "1ms")
    assert report["dry_run"] and report["jobs"] >= 1 and job["job_id"] in report["job_ids"]
    assert report["logs"] >= 1 and report["log_bytes"] > 0
    assert node.status(job["job_id"])["state"] == "failed"  # still there
    shown = node.ciadm("gc", "--dry-run").stdout.splitlines()  # the default age: 90 days
    assert shown[0].startswith("would delete 0 jobs and 0 logs (0 bytes) that finished before ")
    bad = node.ciadm("gc", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than" in one_error_line(bad.stderr)
