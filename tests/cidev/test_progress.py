"""``cidev run`` on a terminal: a status line kept at the bottom, erased before the summary.

The program runs on a real pseudo-terminal (40 columns, so the status line must be cut); its raw output is
replayed like a terminal would (``\\r\\x1b[K`` erases the line) to check what
a person sees: every plain line, and no status line left behind.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

from cidev.run_engine import JobResult
from cidev.run_progress import ERASE, ProgressDisplay
from common.masking import Masker
from common.rpc import admin_pb2, jobs_pb2
from tests.cidev.test_run import CIDEV, cidev_run, make_repo

COLUMNS = 40


def run_on_a_terminal(repo: Path, *args: str, timeout: float = 120) -> tuple[int, str]:
    """``cidev run`` with stdout on a pty of ``COLUMNS`` columns: (exit status, raw output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    env = {**os.environ, "TERM": "xterm"}
    env.pop("COLUMNS", None)  # the width must come from the terminal
    proc = subprocess.Popen([str(CIDEV), "run", *args], cwd=repo, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    raw = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not chunk:
                break
            raw += chunk
        proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, raw.decode().replace("\r\n", "\n")


def replay(raw: str) -> tuple[list[str], list[str], str]:
    """(lines left on the screen, status lines drawn then erased, what stays on the last line)."""
    lines: list[str] = []
    erased: list[str] = []
    current = ""
    for i, part in enumerate(raw.split(ERASE)):
        if i:
            if current:
                erased.append(current)
            current = ""
        pieces = part.split("\n")
        pieces[0] = current + pieces[0]
        lines.extend(pieces[:-1])
        current = pieces[-1]
    return lines, erased, current


def test_a_terminal_gets_a_status_line_that_never_stays(tmp_path):
    repo = make_repo(tmp_path / "py", example="python")
    status, raw = run_on_a_terminal(repo)
    assert status == 0, raw
    lines, erased, last = replay(raw)
    assert last == ""  # the status line was erased for good
    assert not any("jobs done" in line for line in lines)
    # What stays is what a pipe gets.
    for n, name in enumerate(["Interpreter", "Syntax check", "Unit tests"], start=1):
        assert f"[test] step {n}/3 {name}: started" in lines
        assert any(line.startswith(f"[test] step {n}/3 {name}: succeeded in ") for line in lines)
    assert "[test] | 1 passed" in lines and lines[-1] == "all jobs succeeded"
    # The status line: jobs done and the running job's step, never wider than the terminal.
    assert any(s.startswith("cidev: 0/1 jobs done | test: step 3/3 ") for s in erased), erased
    assert "cidev: 1/1 jobs done" in erased
    assert all(len(s) < COLUMNS for s in erased), max(erased, key=len)
    assert any(s.endswith("…") for s in erased)  # cut, not wrapped


def test_a_pipe_gets_plain_lines_only(tmp_path):
    repo = make_repo(tmp_path / "py", example="python")
    out = cidev_run(repo)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\r" not in out.stdout and "jobs done" not in out.stdout


def request(key: str, *steps: str) -> jobs_pb2.JobRequest:
    return jobs_pb2.JobRequest(key=key, steps=[jobs_pb2.Step(name=name, run="true") for name in steps])


def test_status_line_follows_the_jobs_and_is_cut_to_the_width():
    written: list[str] = []
    now = [100.0]
    width = [200]
    progress = ProgressDisplay(written.append, Masker(["s3cret"]), jobs=2, clock=lambda: now[0],
                               width=lambda: width[0])
    build, lint = request("build", "Compile", ""), request("lint", "s3cret check")
    progress.job_started(build)
    assert written[-1] == ERASE + "cidev: 0/2 jobs done | build: 0.00s"
    now[0] = 112.5
    progress.page(build, admin_pb2.LogPage(first_sequence=1, runs=[admin_pb2.LogRun(
        step=1, stream=admin_pb2.LOG_STREAM_STDOUT, lines=1, at=now[0], data=b"hello")]))
    assert written[-2] == ERASE + "[build] | hello\n"  # the status is erased before the line
    assert written[-1] == ERASE + "cidev: 0/2 jobs done | build: step 2/2 12.5s"
    progress.job_started(lint)
    progress.step(lint, jobs_pb2.StepResult(index=0, name="s3cret check", state=jobs_pb2.STEP_STATE_RUNNING))
    assert written[-1].endswith("| lint: step 1/1 *** check 0.00s")  # masked like every line
    progress.job_finished(build, JobResult(build.key, jobs_pb2.JOB_STATE_SUCCEEDED, "", (), 12.5))
    assert written[-1] == ERASE + "cidev: 1/2 jobs done | lint: step 1/1 *** check 0.00s"

    width[0] = 30
    progress.redraw()
    assert written[-1] == ERASE + "cidev: 1/2 jobs done | lint:…" and len(written[-1]) - len(ERASE) == 29

    progress.close()
    assert written[-1] == ERASE
    count = len(written)
    progress.redraw()
    assert len(written) == count  # nothing is drawn once closed
