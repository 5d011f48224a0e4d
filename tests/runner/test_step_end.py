"""Steps end on time: a process that keeps a step's output open holds neither the step nor the job;
scripts reach the shell through a file; a job's log stops at its limit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from pathlib import Path

from common.logbatch import STDOUT, SYSTEM
from common.rpc import jobs_pb2
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import make_repo, runner_exit, start_runner

S = jobs_pb2


def step(run: str, name: str, **kw) -> jobs_pb2.Step:  # type: ignore[no-untyped-def]
    return jobs_pb2.Step(name=name, run=run, **kw)


async def run_job(tmp_path: Path, steps: list[jobs_pb2.Step], **job):  # type: ignore[no-untyped-def]
    repo = make_repo(tmp_path / "repo", {"hello.txt": "hello\n"})
    limit = job.pop("log_limit_bytes", 0)
    fails = job.pop("log_limit_fails", False)
    async with orchestrator(tmp_path / "logs") as orch:
        request = dataclasses.replace(assigned("job-1", steps, clone_url=repo.url, sha=repo.sha, grace=0.5, **job),
                                      log_limit_bytes=limit, log_limit_fails=fails)
        session = orch.gateway.assign(request)
        proc = await start_runner(orch.server.address, session.token, tmp_path / "vm", "--pipe-grace", "1")
        try:
            outcome = await asyncio.wait_for(session.wait_finished(), 90)
        finally:
            code, stderr = await runner_exit(proc)
        lines = await (await session.log()).read_all()
    assert code == 0, stderr
    return outcome, lines


def kill_recorded(pid_file: Path) -> None:
    """The test's own leftovers: these runners are not contained, so nothing else kills them."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def texts(lines, stream=None, step=None) -> list[str]:  # type: ignore[no-untyped-def]
    return [ln.text() for ln in lines if (stream is None or ln.stream == stream) and (step is None or ln.step == step)]


async def test_a_background_process_holding_stdout_does_not_hold_the_step(tmp_path: Path):
    pid_file = tmp_path / "daemon.pid"
    # The step ends only once the daemon leads its own session (before, the step's group kill would get it).
    steps = [step(f"setsid sleep 300 & echo $! > {pid_file}; "
                  "until [ \"$(awk '{print $6}' /proc/$!/stat)\" = \"$!\" ]; do sleep 0.02; done; echo main done",
                  "Daemon"),
             step("echo next", "Next")]
    try:
        outcome, lines = await run_job(tmp_path, steps)
    finally:
        kill_recorded(pid_file)
    assert outcome.state == S.JOB_STATE_SUCCEEDED, outcome.reason
    assert [s.state for s in outcome.steps] == [S.STEP_STATE_SUCCEEDED, S.STEP_STATE_SUCCEEDED]
    assert "main done" in texts(lines, STDOUT, 0) and texts(lines, STDOUT, 1) == ["next"]
    assert any("output still open 1s after the step ended" in t for t in texts(lines, SYSTEM, 0))


async def test_a_step_whose_grandchild_holds_stdout_ends_at_its_timeout_failed(tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    steps = [step(f"setsid sleep 300 & echo $! > {pid_file}; echo waiting; sleep 300", "Hang",
                  timeout_seconds=2.0),
             step("echo never", "Never")]
    try:
        outcome, lines = await run_job(tmp_path, steps)
    finally:
        kill_recorded(pid_file)
    assert outcome.state == S.JOB_STATE_FAILED
    assert outcome.reason == "step 1 (Hang) timed out after 2s"
    assert [s.state for s in outcome.steps] == [S.STEP_STATE_FAILED, S.STEP_STATE_SKIPPED]
    assert any(t.startswith("timed out after 2s with exit code") for t in texts(lines, SYSTEM, 0))


async def test_a_job_timeout_says_after_how_long(tmp_path: Path):
    steps = [step("sleep 300", "Slow")]
    outcome, lines = await run_job(tmp_path, steps, timeout=2.0)
    assert outcome.state == S.JOB_STATE_FAILED and outcome.reason == "job timed out after 2s"
    assert any(t.startswith("stopped: the job timed out after 2s") for t in texts(lines, SYSTEM, 0))


async def test_a_script_larger_than_an_argument_may_be_reaches_the_shell_through_a_file(tmp_path: Path):
    filler = "".join(f": filler line {i} {'x' * 80}\n" for i in range(3000))  # ~270 KiB, over 128 KiB
    script = filler + 'echo "script ran"; tr "\\0" " " < /proc/$$/cmdline | wc -c'
    outcome, lines = await run_job(tmp_path, [step(script, "Big")])
    assert outcome.state == S.JOB_STATE_SUCCEEDED, outcome.reason
    out = texts(lines, STDOUT, 0)
    assert out[0] == "script ran"
    assert int(out[1]) < 1000  # the shell's argv names the file, it does not carry the script


async def test_past_its_log_limit_a_job_logs_one_line_and_goes_on(tmp_path: Path):
    steps = [step("seq 1 100000", "Loud"), step("echo after", "After")]
    outcome, lines = await run_job(tmp_path, steps, log_limit_bytes=4000)
    assert outcome.state == S.JOB_STATE_SUCCEEDED
    assert [s.state for s in outcome.steps] == [S.STEP_STATE_SUCCEEDED, S.STEP_STATE_SUCCEEDED]
    kept = texts(lines, STDOUT)
    assert kept == [str(n) for n in range(1, len(kept) + 1)]  # whole lines, in order, from the start
    assert sum(len(t) + 1 for t in kept) <= 4000 < sum(len(t) + 1 for t in kept) + 10
    notes = [t for t in texts(lines, SYSTEM) if t.startswith("log truncated")]
    assert notes == ["log truncated at 4000 bytes (this job's log limit): the rest of its output is not kept anywhere"]
    assert "after" not in kept  # output after the limit is dropped, the step still ran


async def test_past_its_log_limit_a_job_fails_when_configured_so(tmp_path: Path):
    steps = [step("seq 1 100000; sleep 300", "Loud"), step("echo after", "After")]
    outcome, lines = await run_job(tmp_path, steps, log_limit_bytes=4000, log_limit_fails=True)
    assert outcome.state == S.JOB_STATE_FAILED
    assert outcome.reason == "the job's log reached its limit of 4000 bytes"
    assert [s.state for s in outcome.steps] == [S.STEP_STATE_FAILED, S.STEP_STATE_SKIPPED]
    assert any(t.startswith("log truncated at 4000 bytes") for t in texts(lines, SYSTEM))
