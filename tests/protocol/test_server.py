"""RunnerService over real gRPC on loopback: auth, logs, steps, cancel, complete."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from common import grpc_options
from common.logbatch import STDOUT
from common.rpc import jobs_pb2, runner_pb2
from common.version import VERSION
from tests.protocol.harness import assigned, bearer, orchestrator, stub


def ref(job_id: str, attempt: int = 1) -> runner_pb2.JobRef:
    return runner_pb2.JobRef(job_id=job_id, attempt=attempt)


def batch(job_id: str, first: int, n: int) -> runner_pb2.LogBatch:
    b = runner_pb2.LogBatch(job=ref(job_id), first_sequence=first)
    b.runs.add(step=0, stream=STDOUT, at=time.time(), lines=n,
               data=b"\n".join(b"%d" % i for i in range(first, first + n)))
    return b


STEPS = [jobs_pb2.Step(name="one", run="true")]


async def test_get_job_hands_out_secrets_only_when_trusted(tmp_path):
    async with orchestrator(tmp_path) as orch:
        trusted = orch.gateway.assign(assigned("job-a", STEPS, secrets={"TOKEN": "s3cr3t-value"}))
        untrusted = orch.gateway.assign(assigned("job-b", STEPS, secrets={"TOKEN": "s3cr3t-value"}, trusted=False))
        channel, client = stub(orch.server.address)
        async with channel:
            a = await client.GetJob(runner_pb2.GetRunnerJobRequest(job=ref("job-a"), runner_version=VERSION),
                                    metadata=bearer(trusted.token))
            b = await client.GetJob(runner_pb2.GetRunnerJobRequest(job=ref("job-b"), runner_version=VERSION),
                                    metadata=bearer(untrusted.token))
    assert dict(a.secrets) == {"TOKEN": "s3cr3t-value"} and dict(b.secrets) == {}
    assert [s.run for s in a.steps] == ["true"] and list(a.shell) == ["bash", "-eo", "pipefail", "-c"]
    assert a.heartbeat_interval_seconds == pytest.approx(0.2)
    assert trusted.connected.is_set()


async def test_logs_acked_deduped_and_resumed_after_reconnect(tmp_path):
    async with orchestrator(tmp_path) as orch:
        session = orch.gateway.assign(assigned("job-a", STEPS))
        channel, client = stub(orch.server.address)
        async with channel:
            call = client.StreamLogs(metadata=bearer(session.token))
            assert (await call.read()).durable_sequence == 0
            await call.write(batch("job-a", 1, 10))
            assert (await call.read()).durable_sequence == 10
            await call.write(batch("job-a", 11, 5))
            assert (await call.read()).durable_sequence == 15
            await call.done_writing()
            # a reconnecting runner learns where to resume, and a resend is dropped
            call = client.StreamLogs(metadata=bearer(session.token))
            assert (await call.read()).durable_sequence == 15
            await call.write(batch("job-a", 11, 10))
            assert (await call.read()).durable_sequence == 20
            await call.done_writing()
        lines = await (await session.log()).read_all()
    assert [ln.content for ln in lines] == [b"%d" % i for i in range(1, 21)]


async def test_gap_is_refused(tmp_path):
    async with orchestrator(tmp_path) as orch:
        session = orch.gateway.assign(assigned("job-a", STEPS))
        channel, client = stub(orch.server.address)
        async with channel:
            call = client.StreamLogs(metadata=bearer(session.token))
            await call.read()
            await call.write(batch("job-a", 5, 1))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_steps_cancel_and_complete(tmp_path):
    seen: list[jobs_pb2.StepResult] = []

    async def on_step(result):
        seen.append(result)

    async with orchestrator(tmp_path) as orch:
        session = orch.gateway.assign(assigned("job-a", STEPS), on_step=on_step)
        channel, client = stub(orch.server.address)
        md = bearer(session.token)
        async with channel:
            await client.ReportStep(runner_pb2.StepReport(job=ref("job-a"), step=jobs_pb2.StepResult(
                index=0, name="one", state=jobs_pb2.STEP_STATE_RUNNING)), metadata=md)
            reply = await client.Heartbeat(runner_pb2.HeartbeatRequest(job=ref("job-a")), metadata=md)
            assert not reply.cancel
            orch.gateway.cancel("job-a", 1, "stop it")
            reply = await client.Heartbeat(runner_pb2.HeartbeatRequest(job=ref("job-a")), metadata=md)
            assert reply.cancel and reply.reason == "stop it"
            call = client.StreamLogs(metadata=md)
            await call.read()
            await call.write(batch("job-a", 1, 3))
            await call.read()
            await call.done_writing()
            with pytest.raises(grpc.aio.AioRpcError) as early:
                await client.Complete(runner_pb2.CompleteRequest(
                    job=ref("job-a"), state=jobs_pb2.JOB_STATE_CANCELLED, last_sequence=4), metadata=md)
            assert early.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert not session.finished
            done = jobs_pb2.StepResult(index=0, name="one", state=jobs_pb2.STEP_STATE_FAILED, exit_code=143)
            req = runner_pb2.CompleteRequest(job=ref("job-a"), state=jobs_pb2.JOB_STATE_CANCELLED,
                                             reason="stop it", last_sequence=3, steps=[done])
            await client.Complete(req, metadata=md)
            await client.Complete(req, metadata=md)  # a retried Complete is harmless
        outcome = await session.wait_finished()
        joblog = await session.log()
    assert [s.state for s in seen] == [jobs_pb2.STEP_STATE_RUNNING]
    assert outcome.state == jobs_pb2.JOB_STATE_CANCELLED and outcome.reason == "stop it"
    assert [s.exit_code for s in outcome.steps] == [143]
    assert outcome.log_tail == ["1", "2", "3"] and joblog.closed


async def _refused(client, token, job_id):
    """Try every call with ``token`` against ``job_id``; return the status codes."""
    md = bearer(token) if token is not None else ()
    codes = []
    calls = [
        lambda: client.GetJob(runner_pb2.GetRunnerJobRequest(job=ref(job_id)), metadata=md),
        lambda: client.ReportStep(runner_pb2.StepReport(job=ref(job_id), step=jobs_pb2.StepResult(
            index=0, state=jobs_pb2.STEP_STATE_FAILED)), metadata=md),
        lambda: client.Heartbeat(runner_pb2.HeartbeatRequest(job=ref(job_id)), metadata=md),
        lambda: client.Complete(runner_pb2.CompleteRequest(job=ref(job_id), state=jobs_pb2.JOB_STATE_SUCCEEDED),
                                metadata=md),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call()
        codes.append(err.value.code())
    stream = client.StreamLogs(metadata=md)
    # The refusal may come before the write goes out (a bad token: the write
    # itself then fails) or, for a valid token of another attempt, after its
    # own resume ack when the batch naming the victim arrives. Either way the
    # call's final status is the server's answer.
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await stream.write(batch(job_id, 1, 2))
        for _ in range(2):
            ack = await stream.read()
            assert ack.durable_sequence == 0
    codes.append(await stream.code())
    return set(codes)


async def test_refused_tokens_change_nothing(tmp_path):
    async with orchestrator(tmp_path) as orch:
        victim = orch.gateway.assign(assigned("job-a", STEPS))
        other = orch.gateway.assign(assigned("job-b", STEPS))
        expired = orch.issuer.issue("job-a", 1, now=time.time() - 3600)
        channel, client = stub(orch.server.address)
        async with channel:
            assert await _refused(client, expired, "job-a") == {grpc.StatusCode.UNAUTHENTICATED}
            assert await _refused(client, "garbage", "job-a") == {grpc.StatusCode.UNAUTHENTICATED}
            assert await _refused(client, None, "job-a") == {grpc.StatusCode.UNAUTHENTICATED}
            # job-b's valid token aimed at job-a: refused on every call
            codes = await _refused(client, other.token, "job-a")
            assert codes == {grpc.StatusCode.PERMISSION_DENIED}
            # a token of another attempt of the same job
            codes = await _refused(client, orch.issuer.issue("job-a", 2), "job-a")
            assert codes == {grpc.StatusCode.PERMISSION_DENIED}
        joblog = await victim.log()
        assert joblog.highest_sequence == 0 and not joblog.closed
        assert not victim.connected.is_set() and victim.last_heartbeat == 0.0
        assert victim.steps == {} and not victim.finished
        assert not (await other.log()).highest_sequence


async def test_release_ends_session_and_kills_token(tmp_path):
    async with orchestrator(tmp_path) as orch:
        session = orch.gateway.assign(assigned("job-a", STEPS))
        outcome = await orch.gateway.release("job-a", 1, reason="VM failed to boot")
        assert outcome.state == jobs_pb2.JOB_STATE_ERRORED and outcome.reason == "VM failed to boot"
        assert (await session.wait_finished()) == outcome
        channel, client = stub(orch.server.address)
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.Heartbeat(runner_pb2.HeartbeatRequest(job=ref("job-a")), metadata=bearer(session.token))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_keepalive_settings_agree():
    server = dict(grpc_options.server_options())
    client = dict(grpc_options.client_options())
    # the server must tolerate pings at the client's rate, or it sends GOAWAY "too many pings"
    assert server["grpc.http2.min_recv_ping_interval_without_data_ms"] <= client["grpc.keepalive_time_ms"]
    assert server["grpc.keepalive_permit_without_calls"] == client["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.max_receive_message_length"] >= client["grpc.max_send_message_length"]


async def test_refused_tokens_leave_a_live_job_untouched(tmp_path):
    """The victim already has stored lines, a running step and a heartbeat; each refused token changes none of it."""
    async with orchestrator(tmp_path) as orch:
        victim = orch.gateway.assign(assigned("job-a", STEPS))
        other = orch.gateway.assign(assigned("job-b", STEPS))
        channel, client = stub(orch.server.address)
        md = bearer(victim.token)
        async with channel:
            call = client.StreamLogs(metadata=md)
            await call.read()
            await call.write(batch("job-a", 1, 7))
            assert (await call.read()).durable_sequence == 7
            await call.done_writing()
            running = jobs_pb2.StepResult(index=0, name="one", state=jobs_pb2.STEP_STATE_RUNNING)
            await client.ReportStep(runner_pb2.StepReport(job=ref("job-a"), step=running), metadata=md)
            await client.Heartbeat(runner_pb2.HeartbeatRequest(job=ref("job-a")), metadata=md)
            log_file = tmp_path / "job-a" / "1.log"
            before = (log_file.read_bytes(), log_file.with_suffix(".idx").read_bytes(),
                      dict(victim.steps), victim.last_heartbeat)
            refused = {
                "expired": (orch.issuer.issue("job-a", 1, now=time.time() - 3600), grpc.StatusCode.UNAUTHENTICATED),
                "garbage": ("eyJhbGciOiJIUzI1NiJ9.garbage.garbage", grpc.StatusCode.UNAUTHENTICATED),
                "other job": (other.token, grpc.StatusCode.PERMISSION_DENIED),
            }
            for what, (token, code) in refused.items():
                assert await _refused(client, token, "job-a") == {code}, what
                after = (log_file.read_bytes(), log_file.with_suffix(".idx").read_bytes(),
                         dict(victim.steps), victim.last_heartbeat)
                assert after == before, f"a refused {what} token changed the job"
                assert not victim.finished and victim.cancel_reason is None
            # The real token still works, and the log resumes where it was.
            call = client.StreamLogs(metadata=md)
            assert (await call.read()).durable_sequence == 7
            await call.done_writing()
        lines = await (await victim.log()).read_all()
    assert [ln.content for ln in lines] == [b"%d" % i for i in range(1, 8)]
    assert (await other.log()).highest_sequence == 0
