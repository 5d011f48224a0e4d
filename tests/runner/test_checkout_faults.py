"""The checkout under network faults: bounded by the job's time, stopped by a cancel, retried after a blip.

A real runner subprocess fetches over smart HTTP from the real ``git
http-backend`` (``tests.fakes.git_http``), which fails on cue, or from a
listener that accepts and never answers (a black-holed path: git waits
forever, ``GIT_TIMEOUT`` is 600 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.rpc import jobs_pb2
from tests.fakes.git_http import BlackHole, GitHttpServer
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import make_repo, runner_exit, start_runner
from tests.waiting import async_wait_until

pytestmark = pytest.mark.faults

S = jobs_pb2
STEPS = [jobs_pb2.Step(name="Build", run="cat a")]


def processes_naming(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(text.encode() in arg for arg in args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    await hole.start()
    try:
        yield hole
    finally:
        await hole.close()


async def run_stalled(tmp_path: Path, hole: BlackHole, timeout: float, during=None):  # type: ignore[no-untyped-def]
    """A job whose clone URL is ``hole``: its outcome once the runner exited 0."""
    async with orchestrator(tmp_path / "logs") as orch:
        session = orch.gateway.assign(assigned(
            "job-1", STEPS, timeout=timeout, clone_url=f"http://127.0.0.1:{hole.port}/repo.git", sha="a" * 40))
        proc = await start_runner(orch.server.address, session.token, tmp_path / "vm")
        try:
            if during is not None:
                await during(orch)
            outcome = await asyncio.wait_for(session.wait_finished(), 60)
        finally:
            code, stderr = await runner_exit(proc)
    assert code == 0, stderr
    return outcome


async def test_a_stalled_fetch_ends_at_the_job_timeout(tmp_path: Path, black_hole: BlackHole):
    outcome = await run_stalled(tmp_path, black_hole, timeout=3.0)
    assert black_hole.accepted >= 1
    assert (outcome.state, outcome.reason) == (S.JOB_STATE_FAILED, "job timed out after 3s")
    assert [s.state for s in outcome.steps] == [S.STEP_STATE_SKIPPED]
    assert processes_naming(f"127.0.0.1:{black_hole.port}") == [], "git and its remote helper were killed"


async def test_a_cancel_stops_a_stalled_fetch(tmp_path: Path, black_hole: BlackHole):
    async def cancel(orch) -> None:  # type: ignore[no-untyped-def]
        await async_wait_until(lambda: black_hole.accepted >= 1, timeout=30, what="git to connect")
        orch.gateway.cancel("job-1", 1, "pull request #7 was closed")

    outcome = await run_stalled(tmp_path, black_hole, timeout=600.0, during=cancel)
    assert (outcome.state, outcome.reason) == (S.JOB_STATE_CANCELLED, "pull request #7 was closed")


@pytest.mark.parametrize("fault", ["503", "reset"])
async def test_a_network_blip_during_the_fetch_is_retried(tmp_path: Path, fault: str):
    repo = make_repo(tmp_path / "repos" / "repo", {"a": "from the repo\n"})
    server = GitHttpServer(tmp_path / "repos")
    await server.start()
    if fault == "503":
        server.fail_next(2, 503)
    else:
        server.reset_next(2)
    try:
        async with orchestrator(tmp_path / "logs") as orch:
            session = orch.gateway.assign(assigned("job-1", STEPS, clone_url=f"{server.url}/repo/.git", sha=repo.sha))
            proc = await start_runner(orch.server.address, session.token, tmp_path / "vm")
            try:
                outcome = await asyncio.wait_for(session.wait_finished(), 60)
            finally:
                code, stderr = await runner_exit(proc)
            lines = [ln.text() for ln in await (await session.log()).read_all()]
    finally:
        await server.close()
    assert code == 0, stderr
    assert outcome.state == S.JOB_STATE_SUCCEEDED, (outcome.reason, lines)
    assert "from the repo" in lines
    retries = [ln for ln in lines if ln.startswith("fetch failed")]
    assert len(retries) == 2 and "retrying in" in retries[0], lines
    assert not any("fetching all branches" in ln for ln in lines), "a network failure is not a refused commit"
