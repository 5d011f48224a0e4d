"""Faults: the orchestrator restarts mid-stream; the runner is refused or stranded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from common.logbatch import STDOUT
from common.rpc import jobs_pb2
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from tests.protocol.harness import assigned
from tests.runner.helpers import ROOT, make_repo, read_spool, runner_exit, serve_runners, start_runner
from tests.waiting import async_wait_until

N = 100_000


def numbers(go) -> str:
    """Print ``line 1`` .. ``line N`` in blocks of 1000 with a pause after each,
    so lines are still flowing when the test kills the orchestrator; the
    second half waits for the file ``go``, so it is printed while it is down."""
    block = "for b in $(seq {} {}); do seq -f 'line %.0f' $((b*1000+1)) $((b*1000+1000)); sleep 0.02; done"
    blocks = N // 1000
    return (f"{block.format(0, blocks // 2 - 1)}; while [ ! -e {go} ]; do sleep 0.05; done; "
            f"{block.format(blocks // 2, blocks - 1)}")


async def test_server_restart_mid_stream_loses_and_doubles_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo", {"x": "y"})
    go = tmp_path / "go"
    half = N // 2
    job = assigned("job-1", [jobs_pb2.Step(name="Numbers", run=numbers(go))], clone_url=repo.url, sha=repo.sha)
    spool = tmp_path / "vm" / "spool" / "job-1-1.spool"

    store, gateway, server = await serve_runners(tmp_path / "logs")
    session = gateway.assign(job)
    port = server.port
    proc = await start_runner(server.address, session.token, tmp_path / "vm")
    try:
        joblog = await session.log()
        await async_wait_until(lambda: joblog.highest_sequence >= 5000, timeout=60,
                               what="the first lines to be stored")
        # Stop the orchestrator's server while lines are flowing, and let the
        # step print the second half while it is down.
        await server.stop(grace=0)
        assert joblog.highest_sequence < half, "the server went down mid-stream"
        await store.aclose()
        spooled = spool.stat().st_size
        go.touch()
        await async_wait_until(lambda: spool.stat().st_size > spooled + 200_000, timeout=60,
                               what="the runner to spool lines while the orchestrator is down")
        # Same port, same log directory, same signing key: a restarted orchestrator.
        store, gateway, server = await serve_runners(tmp_path / "logs", port=port)
        session = gateway.assign(job)
        outcome = await asyncio.wait_for(session.wait_finished(), 90)
        lines = await (await session.log()).read_all()
    finally:
        await server.stop(grace=0)
        await store.aclose()
        code, stderr = await runner_exit(proc)
    assert code == 0, stderr
    assert outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED
    numbered = [ln.content for ln in lines if ln.step == 0 and ln.stream == STDOUT]
    assert numbered == [b"line %d" % i for i in range(1, N + 1)]
    assert [ln.sequence for ln in lines] == list(range(1, len(lines) + 1))


async def _orchestrator_process(logdir, port: int, spec: dict) -> tuple[asyncio.subprocess.Process, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.runner.orchestrator_child", str(logdir), str(port), json.dumps(spec),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line, "the orchestrator process did not start"
    return proc, json.loads(line)


async def test_orchestrator_killed_9_and_restarted_mid_stream(tmp_path):
    """SIGKILL, not a clean stop: whatever the dead process half-wrote, the log ends exactly right."""
    repo = make_repo(tmp_path / "repo", {"x": "y"})
    go, logdir = tmp_path / "go", tmp_path / "logs"
    half = N // 2
    spec = {"clone_url": repo.url, "sha": repo.sha, "script": numbers(go)}
    spool = tmp_path / "vm" / "spool" / "job-1-1.spool"
    log_file = logdir / "job-1" / "1.log"
    first, hello = await _orchestrator_process(logdir, 0, spec)
    procs = [first]
    runner = await start_runner(f"127.0.0.1:{hello['port']}", hello["token"], tmp_path / "vm")
    try:
        # Kill it while the first half is streaming in.
        await async_wait_until(lambda: log_file.exists() and log_file.stat().st_size > 50_000, timeout=60,
                               what="the first lines to be stored")
        first.kill()
        assert await first.wait() == -signal.SIGKILL
        assert log_file.stat().st_size < half * len(b"line 50000"), "killed mid-stream"
        spooled = spool.stat().st_size
        go.touch()
        await async_wait_until(lambda: spool.stat().st_size > spooled + 200_000, timeout=60,
                               what="the runner to spool lines while the orchestrator is dead")
        second, _ = await _orchestrator_process(logdir, hello["port"], spec)
        procs.append(second)
        assert second.stdout is not None
        finished = json.loads(await asyncio.wait_for(second.stdout.readline(), 90))
        assert await asyncio.wait_for(second.wait(), 30) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        code, stderr = await runner_exit(runner)
    assert code == 0, stderr
    assert finished == {"finished": "JOB_STATE_SUCCEEDED"}
    async with LogStore(logdir) as store:
        lines = await (await store.open("job-1", 1, create=False)).read_all()
    numbered = [ln.content for ln in lines if ln.step == 0 and ln.stream == STDOUT]
    assert numbered == [b"line %d" % i for i in range(1, N + 1)]
    assert [ln.sequence for ln in lines] == list(range(1, len(lines) + 1))


async def test_orchestrator_gone_past_limit_keeps_logs_and_exits_distinctly(tmp_path):
    repo = make_repo(tmp_path / "repo", {"x": "y"})
    go = tmp_path / "go"
    # The step outlives the offline limit (the node's patience of 2 s less a margin: 1.5 s)
    # by running 3 s after the outage begins.
    steps = [jobs_pb2.Step(name="Wait", run=f"echo before; while [ ! -e {go} ]; do sleep 0.05; done; "
                                            "sleep 3; echo after-outage"),
             jobs_pb2.Step(name="Never", run="echo never")]
    store, gateway, server = await serve_runners(tmp_path / "logs", patience=2.0)
    session = gateway.assign(assigned("job-1", steps, clone_url=repo.url, sha=repo.sha))
    # The runner's own limit (300 s by default) applies only until GetJob hands out the node's.
    proc = await start_runner(server.address, session.token, tmp_path / "vm")
    try:
        joblog = await session.log()
        await async_wait_until(lambda: joblog.highest_sequence >= 1 and session.steps, timeout=60,
                               what="the step to start")
    finally:
        await server.stop(grace=0)
        await store.aclose()
    go.touch()
    code, stderr = await runner_exit(proc)
    assert code == 5, stderr
    spooled = read_spool(tmp_path / "vm" / "spool" / "job-1-1.spool")
    out = [ln.content for ln in spooled if ln.stream == STDOUT]
    assert out[-1:] == [b"after-outage"], "the current step finished, its undelivered lines stayed on disk"
    async with LogStore(tmp_path / "logs") as logs:
        stored = await (await logs.open("job-1", 1, create=False)).read_all()
    delivered = [ln.content for ln in stored if ln.stream == STDOUT]
    assert b"before" in out + delivered, "a line is on the VM or at the orchestrator: never lost"
    assert not [ln for ln in spooled if ln.step == 1], "later steps were not started"


async def test_refused_token_exits_4(tmp_path):
    store, gateway, server = await serve_runners(tmp_path / "logs")
    try:
        gateway.assign(assigned("job-1", [jobs_pb2.Step(run="true")]))
        other = TokenIssuer(os.urandom(32), ttl_seconds=60).issue("job-1", 1)
        proc = await start_runner(server.address, other, tmp_path / "vm")
        code, stderr = await runner_exit(proc)
    finally:
        await server.stop(grace=0)
        await store.aclose()
    assert code == 4
    assert "refused" in stderr and other not in stderr
