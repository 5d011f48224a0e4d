"""Jobs from AdminService are not forge jobs: marked as the caller's, untrusted unless allowed,
and their clone credentials never stored with them nor shown."""

from __future__ import annotations

from pathlib import Path

import grpc

from common.cloneurl import redact_url, split_userinfo, with_userinfo
from common.rpc import admin_pb2, admin_pb2_grpc, jobs_pb2, runner_pb2
from common.version import VERSION
from orchestrator.admin.settings import AdminConfig
from orchestrator.operators import OperatorTokens, Role
from orchestrator.runnerapi import AssignedJob
from orchestrator.store import JobState
from tests.admin.conftest import bearer
from tests.node.harness import job, local_node, local_settings
from tests.protocol.harness import bearer as runner_bearer
from tests.protocol.harness import job_request, orchestrator, stub
from tests.waiting import async_wait_until

PASSWORD = "s3cret-pass"
URL = f"https://ci-bot:{PASSWORD}@git.example.org/o/r.git"


def forged(job_id: str, *steps: str) -> jobs_pb2.JobRequest:
    """A request that claims everything a caller must not get: a forge source, trust, another sender."""
    request = job(job_id, steps=steps or ("true",))
    request.source = jobs_pb2.JOB_SOURCE_FORGE
    request.submitted_by = "the-integration"
    request.trusted = True
    request.origin = "github push"
    request.checkout.forge = "github"
    request.checkout.clone_url = URL
    return request


def test_clone_url_credentials_are_cut_out_and_put_back() -> None:
    assert split_userinfo(URL) == ("https://git.example.org/o/r.git", f"ci-bot:{PASSWORD}")
    assert with_userinfo(*split_userinfo(URL)) == URL
    assert split_userinfo("https://ghp_tokenonly@github.com/o/r") == ("https://github.com/o/r", "ghp_tokenonly")
    assert split_userinfo("ssh://git@host/o/r.git") == ("ssh://git@host/o/r.git", "")  # a login, not a secret
    assert split_userinfo("ssh://git:pw@host/o/r.git") == ("ssh://host/o/r.git", "git:pw")
    assert split_userinfo("/srv/git/repo") == ("/srv/git/repo", "")
    assert redact_url("https://a:b@h/x?y=1") == "https://h/x?y=1"


async def test_an_admin_job_is_marked_untrusted_and_keeps_its_credentials_apart(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        async with grpc.aio.insecure_channel(node.node.admin_socket) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            reply = await stub.Submit(admin_pb2.SubmitRequest(jobs=[
                # The step prints the password, as a checkout's error might: the stored log masks it.
                forged("j-admin", f"echo cloned with {PASSWORD}", "sleep 0.5")]))
            [info] = reply.jobs
            assert (info.source, info.submitted_by) == (jobs_pb2.JOB_SOURCE_ADMIN, "local")
            assert info.checkout.clone_url == "https://git.example.org/o/r.git"
            record = await node.store.get_job("j-admin")
            assert record is not None
            stored = record.request
            assert (stored.source, stored.submitted_by, stored.trusted) == (jobs_pb2.JOB_SOURCE_ADMIN, "local", False)
            assert f"ci-bot:{PASSWORD}" not in stored.SerializeToString().decode("latin-1")  # not in the job record
            assert stored.checkout.clone_url == "https://git.example.org/o/r.git"
            assert stored.clone_credentials and await node.store.clone_credentials("j-admin") == f"ci-bot:{PASSWORD}"

            # The runner (and only it) is given them: the attempt's session carries them.
            async def session():  # type: ignore[no-untyped-def]
                return node.node.parts.gateway.session("j-admin", 1)
            assigned = (await async_wait_until(session, what="the attempt to be assigned")).job
            assert assigned.clone_userinfo == f"ci-bot:{PASSWORD}" and PASSWORD not in repr(assigned)

            async def finished() -> bool:
                current = await node.store.get_job("j-admin")
                return current is not None and current.state is JobState.SUCCEEDED
            await async_wait_until(finished, what="j-admin to succeed")
            got = await stub.Get(admin_pb2.GetJobRequest(job_id="j-admin"))
            listed = await stub.List(admin_pb2.ListJobsRequest())
            log = b"\n".join([run.data async for page in stub.TailLogs(admin_pb2.TailLogsRequest(job_id="j-admin"))
                              for run in page.runs])
            for shown in (got.SerializeToString(), listed.SerializeToString(), log):
                assert PASSWORD.encode() not in shown
            assert b"cloned with" in log  # the line is there, the password masked
            assert (got.source, got.submitted_by) == (jobs_pb2.JOB_SOURCE_ADMIN, "local")

            # Gone once the job has ended (the sweep).
            async def purged() -> bool:
                return await node.store.clone_credentials("j-admin") is None
            await async_wait_until(purged, what="the clone credentials to be purged")
        events = [e for e in node.events.events if e.job_id == "j-admin"]
        assert events and {(e.source, e.submitted_by) for e in events} == {(jobs_pb2.JOB_SOURCE_ADMIN, "local")}


async def test_trust_needs_the_admin_role_and_the_setting(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, admin=AdminConfig(trusted_submit=True))
    async with local_node(settings) as node:
        tokens = OperatorTokens(node.store)
        operator, _ = await tokens.create("op", Role.OPERATE)
        admin, _ = await tokens.create("boss", Role.ADMIN)
        async with grpc.aio.insecure_channel(node.node.admin_socket) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            await stub.Submit(admin_pb2.SubmitRequest(jobs=[forged("j-op")]), metadata=bearer(operator))
            await stub.Submit(admin_pb2.SubmitRequest(jobs=[forged("j-boss")]), metadata=bearer(admin))
            await stub.Submit(admin_pb2.SubmitRequest(jobs=[forged("j-plain")]))  # the socket's owner: admin
        trusted = {jid: (await node.store.get_job(jid)).request.trusted for jid in ("j-op", "j-boss", "j-plain")}  # type: ignore[union-attr]
        assert trusted == {"j-op": False, "j-boss": True, "j-plain": True}
        submitter = {jid: (await node.store.get_job(jid)).request.submitted_by for jid in trusted}  # type: ignore[union-attr]
        assert submitter == {"j-op": "op", "j-boss": "boss", "j-plain": "local"}
    async with local_node(local_settings(tmp_path / "off")) as node:  # trusted_submit off (the default)
        async with grpc.aio.insecure_channel(node.node.admin_socket) as channel:
            await admin_pb2_grpc.AdminServiceStub(channel).Submit(admin_pb2.SubmitRequest(jobs=[forged("j-x")]))
        record = await node.store.get_job("j-x")
        assert record is not None and record.request.trusted is False


async def test_the_runner_gets_the_credentials_back_in_its_clone_url(tmp_path: Path) -> None:
    async with orchestrator(tmp_path / "logs") as orch:
        request = job_request("j-creds", [jobs_pb2.Step(run="true")], clone_url="https://git.example.org/o/r.git")
        session = orch.gateway.assign(AssignedJob("j-creds", 1, request, clone_userinfo=f"ci-bot:{PASSWORD}"))
        channel, runner = stub(orch.server.address)
        async with channel:
            ref = runner_pb2.JobRef(job_id="j-creds", attempt=1)
            reply = await runner.GetJob(runner_pb2.GetRunnerJobRequest(job=ref, runner_version=VERSION),
                                        metadata=runner_bearer(session.token))
        assert reply.checkout.clone_url == URL
        assert session.job.masked() == [PASSWORD]  # what the job's stored log lines are masked for
