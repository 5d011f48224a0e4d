"""A runner subprocess against the orchestrator's gRPC server on loopback."""

from __future__ import annotations

import asyncio
import base64
import os

from common.logbatch import STDERR, STDOUT, SYSTEM
from common.rpc import jobs_pb2
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import make_repo, record_batches, runner_exit, start_runner

S = jobs_pb2


def step(run: str, name: str = "", **kw) -> jobs_pb2.Step:
    return jobs_pb2.Step(name=name, run=run, **kw)


async def run_job(tmp_path, steps, *, secrets=None, timeout=120.0, files=None, env=None, grace=1.0,
                  during=None):
    repo = make_repo(tmp_path / "repo", files or {"hello.txt": "hello from the repo\n"})
    async with orchestrator(tmp_path / "logs") as orch:
        session = orch.gateway.assign(assigned("job-1", steps, secrets=secrets, timeout=timeout, grace=grace,
                                               clone_url=repo.url, sha=repo.sha, env=env))
        proc = await start_runner(orch.server.address, session.token, tmp_path / "vm")
        try:
            if during is not None:
                await during(orch, session)
            outcome = await asyncio.wait_for(session.wait_finished(), 90)
        finally:
            code, stderr = await runner_exit(proc)
        lines = await (await session.log()).read_all()
    return outcome, lines, code, stderr


def text(lines, step=None, stream=None):
    return [ln.text() for ln in lines if (step is None or ln.step == step) and (stream is None or ln.stream == stream)]


async def test_multi_step_job_from_git(tmp_path):
    steps = [
        step("cat hello.txt; test ! -e LATER; echo to-err >&2", "Read"),
        step('echo "$GREETING $STEP_ONLY"; pwd', "Env", env={"STEP_ONLY": "step-env"}),
        step("exit 3", "Fail"),
        step("echo never", "Skipped"),
    ]
    outcome, lines, code, stderr = await run_job(tmp_path, steps, env={"GREETING": "hi"})
    assert code == 0, stderr
    assert outcome.state == S.JOB_STATE_FAILED
    assert "exit code 3" in outcome.reason
    assert [(s.index, s.state, s.exit_code) for s in outcome.steps] == [
        (0, S.STEP_STATE_SUCCEEDED, 0), (1, S.STEP_STATE_SUCCEEDED, 0),
        (2, S.STEP_STATE_FAILED, 3), (3, S.STEP_STATE_SKIPPED, 0)]
    assert text(lines, 0, STDOUT) == ["hello from the repo"]
    assert text(lines, 0, STDERR) == ["to-err"]
    assert text(lines, 1, STDOUT)[0] == "hi step-env"
    assert text(lines, 1, STDOUT)[1].endswith("job-1-1")
    assert not text(lines, 3, STDOUT)
    assert any("checked out" in t for t in text(lines, -1, SYSTEM))
    assert [ln.sequence for ln in lines] == list(range(1, len(lines) + 1))


async def test_continue_on_error_and_workdir(tmp_path):
    steps = [
        step("exit 7", "Allowed to fail", continue_on_error=True),
        step("pwd; cat inner.txt", "Sub", workdir="sub"),
        step("echo escaped", "Escape", workdir="../.."),
    ]
    outcome, lines, code, _ = await run_job(tmp_path, steps, files={"sub/inner.txt": "inside\n"})
    assert [(s.state, s.exit_code) for s in outcome.steps[:2]] == [
        (S.STEP_STATE_FAILED, 7), (S.STEP_STATE_SUCCEEDED, 0)]
    assert text(lines, 1, STDOUT)[0].endswith("/sub") and text(lines, 1, STDOUT)[1] == "inside"
    assert outcome.steps[2].state == S.STEP_STATE_FAILED and "escaped" not in text(lines, 2, STDOUT)
    assert outcome.state == S.JOB_STATE_FAILED


async def test_a_missing_workdir_fails_the_step_not_the_runner(tmp_path):
    steps = [step("echo in nowhere", "Nowhere", workdir="packaging"), step("echo after", "After")]
    outcome, lines, code, _ = await run_job(tmp_path, steps)
    assert outcome.state == S.JOB_STATE_FAILED and "step 1 (Nowhere)" in outcome.reason
    assert [s.state for s in outcome.steps] == [S.STEP_STATE_FAILED, S.STEP_STATE_SKIPPED]
    assert any("'packaging' is not a directory in the checkout" in t for t in text(lines, 0, SYSTEM))


def _alive(pid_file):
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_step_timeout_kills_the_whole_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = f"(trap '' TERM; sleep 300) & echo $! > {pid_file}; sleep 300"
    steps = [step(script, "Hang", timeout_seconds=1.0), step("echo after", "After")]
    outcome, lines, code, _ = await run_job(tmp_path, steps, grace=0.5)
    assert outcome.state == S.JOB_STATE_FAILED and "timed out" in outcome.reason
    assert outcome.steps[0].state == S.STEP_STATE_FAILED and outcome.steps[0].exit_code in (128 + 15, 128 + 9)
    assert outcome.steps[1].state == S.STEP_STATE_SKIPPED
    assert not _alive(pid_file), "the grandchild that ignored SIGTERM survived"


async def test_job_timeout(tmp_path):
    pid_file = tmp_path / "child.pid"
    steps = [step("echo quick", "Quick"), step(f"sleep 300 & echo $! > {pid_file}; wait", "Slow"),
             step("echo never", "Never")]
    outcome, lines, code, _ = await run_job(tmp_path, steps, timeout=3.0, grace=0.5)
    assert outcome.state == S.JOB_STATE_FAILED and "job timed out" in outcome.reason
    assert [s.state for s in outcome.steps] == [S.STEP_STATE_SUCCEEDED, S.STEP_STATE_FAILED, S.STEP_STATE_SKIPPED]
    assert not _alive(pid_file)


async def test_cancellation_mid_step(tmp_path):
    marker = tmp_path / "started"

    async def cancel_when_started(orch, session):
        from tests.waiting import async_wait_until

        await async_wait_until(marker.exists, timeout=60, what="the step to start")
        orch.gateway.cancel("job-1", 1, "cancelled by alice")

    steps = [step(f"touch {marker}; echo started; sleep 300", "Long"), step("echo never", "Never")]
    outcome, lines, code, _ = await run_job(tmp_path, steps, during=cancel_when_started, grace=0.5)
    assert code == 0
    assert outcome.state == S.JOB_STATE_CANCELLED and outcome.reason == "cancelled by alice"
    assert outcome.steps[0].state == S.STEP_STATE_CANCELLED and outcome.steps[0].exit_code == 128 + 15
    assert outcome.steps[1].state == S.STEP_STATE_SKIPPED
    assert "started" in text(lines, 0, STDOUT)


async def test_secrets_masked_plain_and_base64(tmp_path, monkeypatch):
    sent = record_batches(monkeypatch)
    secret = "tr0ub4dor-and-3"
    b64 = base64.b64encode(secret.encode()).decode()
    steps = [step('echo "plain=$API_KEY"; printf %s "$API_KEY" | base64; echo "url=$API_KEY" >&2', "Leak")]
    outcome, lines, code, stderr = await run_job(tmp_path, steps, secrets={"API_KEY": secret})
    assert outcome.state == S.JOB_STATE_SUCCEEDED
    out = text(lines, 0, STDOUT)
    assert out == ["plain=***", "***"]
    assert text(lines, 0, STDERR) == ["url=***"]
    raw = (tmp_path / "logs" / "job-1" / "1.log").read_bytes()
    assert secret.encode() not in raw and b64.encode() not in raw
    wire = b"".join(sent)
    assert b"plain=***" in wire
    assert secret.encode() not in wire and b64.encode() not in wire, "masked before leaving the VM"
    assert secret not in stderr


async def test_non_utf8_and_very_long_line_survive(tmp_path):
    steps = [step("printf 'bad \\377\\376 bytes\\n'; head -c 300000 /dev/zero | tr '\\0' 'x'; echo; echo end",
                  "Bytes")]
    outcome, lines, code, _ = await run_job(tmp_path, steps)
    out = [ln for ln in lines if ln.step == 0 and ln.stream == STDOUT]
    assert out[0].content == b"bad \xff\xfe bytes"
    long = out[1:-1]
    assert b"".join(ln.content for ln in long) == b"x" * 300000
    assert [ln.continuation for ln in long] == [False] + [True] * (len(long) - 1) and len(long) > 1
    assert max(len(ln.content) for ln in long) <= 64 * 1024
    assert out[-1].content == b"end"


async def test_checkout_of_missing_commit_errors(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a": "b"})
    async with orchestrator(tmp_path / "logs") as orch:
        session = orch.gateway.assign(assigned("job-1", [step("true")], clone_url=repo.url, sha="f" * 40))
        proc = await start_runner(orch.server.address, session.token, tmp_path / "vm")
        outcome = await asyncio.wait_for(session.wait_finished(), 60)
        code, _ = await runner_exit(proc)
    assert code == 0
    assert outcome.state == S.JOB_STATE_ERRORED and "checkout failed" in outcome.reason
    assert outcome.steps[0].state == S.STEP_STATE_SKIPPED
