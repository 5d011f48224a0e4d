"""What must not leak: clone credentials and the runner's own token."""

from __future__ import annotations

import asyncio
import base64

from common.masking import Masker
from common.rpc import jobs_pb2
from runner.checkout import split_credentials
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import make_repo, record_batches, runner_exit, start_runner


def test_credentials_leave_the_url_for_a_header():
    masker = Masker()
    remote = split_credentials("https://x-access-token:ghs_abcdef123456@github.com:443/o/r.git", masker)
    assert remote.url == "https://github.com:443/o/r.git"
    basic = base64.b64encode(b"x-access-token:ghs_abcdef123456").decode()
    assert remote.auth_header == f"Authorization: Basic {basic}"
    assert "ghs_abcdef123456" not in repr(remote)
    assert masker.mask(f"token ghs_abcdef123456 header {basic}") == "token *** header ***"
    assert split_credentials("file:///srv/repo", masker).auth_header is None


async def test_clone_password_never_logged(tmp_path, monkeypatch):
    sent = record_batches(monkeypatch)
    password = "s3cret-pass-word"
    url = f"http://alice:{password}@127.0.0.1:9/repo.git"  # nothing listens: the fetch fails
    async with orchestrator(tmp_path / "logs") as orch:
        session = orch.gateway.assign(assigned("job-1", [jobs_pb2.Step(run="true")], clone_url=url, sha="a" * 40))
        proc = await start_runner(orch.server.address, session.token, tmp_path / "vm")
        outcome = await asyncio.wait_for(session.wait_finished(), 60)
        code, stderr = await runner_exit(proc)
        lines = [ln.text() for ln in await (await session.log()).read_all()]
    assert code == 0 and outcome.state == jobs_pb2.JOB_STATE_ERRORED
    assert any("http://127.0.0.1:9/repo.git" in t for t in lines), lines
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    wire = b"".join(sent).decode("latin-1")  # as it left the VM
    assert "127.0.0.1:9" in wire
    for where in ("\n".join(lines), stderr, wire):
        assert password not in where and basic not in where


async def test_steps_never_see_the_runner_token(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a": "b"})
    async with orchestrator(tmp_path / "logs") as orch:
        session = orch.gateway.assign(assigned(
            "job-1", [jobs_pb2.Step(run="env")], clone_url=repo.url, sha=repo.sha))
        proc = await start_runner(orch.server.address, session.token, tmp_path / "vm",
                                  env={"SOLSTICE_RUNNER_TOKEN": session.token, "UNRELATED_SECRETISH": "zzz"})
        outcome = await asyncio.wait_for(session.wait_finished(), 60)
        await runner_exit(proc)
        env_lines = [ln.text() for ln in await (await session.log()).read_all() if ln.step == 0 and ln.stream == 1]
    assert outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert "CI=true" in env_lines and "SOLSTICE_JOB_ID=job-1" in env_lines
    assert not [t for t in env_lines if session.token in t or t.startswith(("SOLSTICE_RUNNER_", "UNRELATED"))]
