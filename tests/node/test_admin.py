"""AdminService over real gRPC against a node on PostgreSQL + RabbitMQ."""

from __future__ import annotations

import grpc
import pytest

from common.rpc import admin_pb2, jobs_pb2
from orchestrator.names import vm_name
from orchestrator.node.testing import recorded_vms
from orchestrator.node import Node
from orchestrator.store import JobState, StepState
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, driver_of, job
from tests.logs.pages import collect, lines_of
from tests.waiting import async_wait_until

Q, P, R, S, F, C = (JobState.QUEUED, JobState.PROVISIONING, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED,
                    JobState.CANCELLED)


def at(request: jobs_pb2.JobRequest, repo: str = "o/r", ref: str = "refs/heads/main") -> jobs_pb2.JobRequest:
    request.checkout.repo = repo
    request.checkout.ref = ref
    return request


async def running(cluster: Cluster, job_id: str) -> None:
    async def is_running() -> bool:
        record = await cluster.store.get_job(job_id)
        return record is not None and record.state is R
    await async_wait_until(is_running, what=f"{job_id} running")


async def test_submit_get_and_list_with_every_filter(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        reply = await admin.Submit(admin_pb2.SubmitRequest(jobs=[
            at(job("j1"), repo="o/one"), at(job("j2", steps=("exit 1",)), repo="o/one", ref="refs/heads/dev"),
            at(job("j3"), repo="o/two")]))
        assert [(j.job_id, j.state, j.attempt) for j in reply.jobs] == [
            ("j1", jobs_pb2.JOB_STATE_QUEUED, 1), ("j2", jobs_pb2.JOB_STATE_QUEUED, 1),
            ("j3", jobs_pb2.JOB_STATE_QUEUED, 1)]
        for jid in ("j1", "j2", "j3"):
            await cluster.finished(jid)
        info = await admin.Get(admin_pb2.GetJobRequest(job_id="j1"))
        assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED and info.host == "node-a" and info.driver == "instant"
        assert info.checkout.repo == "o/one" and [s.index for s in info.steps] == [0]
        assert info.started_at.ToDatetime() <= info.finished_at.ToDatetime()
        assert cluster.events.job_states("j1") == [Q, P, R, S]  # Submit announces `queued`
        sequence = [f"step{e.step.index}:{e.step.state}" if e.HasField("step") else JobState(e.state).name
                    for e in cluster.events.events if e.job_id == "j1"]
        assert sequence == ["QUEUED", "PROVISIONING", "RUNNING", f"step0:{jobs_pb2.STEP_STATE_RUNNING}",
                            f"step0:{jobs_pb2.STEP_STATE_SUCCEEDED}", "SUCCEEDED"]
        assert {e.attempt for e in cluster.events.events if e.job_id == "j1"} == {1}

        async def ids(**filters: object) -> list[str]:
            listed = await admin.List(admin_pb2.ListJobsRequest(**filters))  # type: ignore[arg-type]
            return sorted(j.job_id for j in listed.jobs)

        assert await ids() == ["j1", "j2", "j3"]
        assert await ids(repo="o/one") == ["j1", "j2"]
        assert await ids(ref="refs/heads/dev") == ["j2"]
        assert await ids(state=jobs_pb2.JOB_STATE_FAILED) == ["j2"]
        assert await ids(state=jobs_pb2.JOB_STATE_SUCCEEDED, repo="o/two") == ["j3"]
        assert await ids(host="node-a") == ["j1", "j2", "j3"]
        assert await ids(host="node-z") == []
        assert len(await ids(limit=2)) == 2
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.List(admin_pb2.ListJobsRequest(limit=100000))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_job_is_not_found_with_one_line(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        calls = [
            admin.Get(admin_pb2.GetJobRequest(job_id="nope")),
            admin.Cancel(admin_pb2.CancelRequest(job_id="nope")),
            admin.Retry(admin_pb2.RetryRequest(job_id="nope")),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert err.value.details() == "no job with id 'nope'"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in admin.TailLogs(admin_pb2.TailLogsRequest(job_id="nope", follow=True)):
                pass
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "\n" not in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.Drain(admin_pb2.DrainRequest(host="ghost"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "ghost" in err.value.details()


async def test_cancel_of_a_queued_job_means_it_never_starts(cluster: Cluster) -> None:
    await cluster.declare("lab-b")
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("later", label="lab-b")]))
        info = await admin.Cancel(admin_pb2.CancelRequest(job_id="later", reason="not wanted"))
        assert info.state == jobs_pb2.JOB_STATE_CANCELLED and info.reason == "not wanted"
        await cluster.events.settled("later", [Q, C])
        assert [e.reason for e in cluster.events.terminal("later")] == ["not wanted"]
        # it never logged a line: its log reads empty and ends, followed or not
        for follow in (False, True):
            pages = await collect(admin.TailLogs(admin_pb2.TailLogsRequest(job_id="later", follow=follow)))
            assert [(p.end, p.ended, p.attempt, len(p.runs)) for p in pages] == [(True, "", 1, 0)]
    # a node that serves lab-b now gets the request: it acknowledges it and runs nothing
    async with cluster.node(cluster.settings(host="node-b", labels=("lab-b",))) as other:
        await async_wait_until(lambda: _acked(other) == 1, what="the request acknowledged")
        assert await cluster.ready("lab-b") == 0
        assert driver_of(other).events == []
    record = await cluster.store.get_job("later")
    assert record is not None and record.state is C and record.host == ""
    assert cluster.events.job_states("later") == [Q, C]


def _acked(node: Node) -> int:
    return node.consumer.stats.acked  # type: ignore[union-attr]


def _ready_is(cluster: Cluster, label: str, count: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await cluster.ready(label) == count
    return check


async def test_cancel_of_a_running_job_stops_it_and_destroys_the_vm(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("busy", steps=("sleep 60",))]))
        await running(cluster, "busy")
        info = await admin.Cancel(admin_pb2.CancelRequest(job_id="busy"))
        assert info.state == jobs_pb2.JOB_STATE_CANCELLED
        record = await cluster.finished("busy")
        assert record.state is C and record.reason == "cancelled by an operator"
        vm = vm_name("busy", 1)
        await async_wait_until(lambda: vm in driver_of(node).destroyed, what="the VM destroyed")
        assert vm not in recorded_vms(node.settings.drivers.local.state_dir)
        assert cluster.events.job_states("busy") == [Q, P, R, C]
        await async_wait_until(lambda: node.scheduler is not None and node.scheduler.idle, what="slot freed")


async def test_a_step_whose_runner_never_answers_the_cancel_ends_cancelled(cluster: Cluster) -> None:
    """The runner is torn down before it reports its step's end: the step ends with its attempt."""
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("wedged", steps=("deaf", "echo never"))]))

        async def step_started() -> bool:
            return [s.state for s in await cluster.store.steps("wedged", 1)] == [StepState.RUNNING]
        await async_wait_until(step_started, what="the step running")
        await admin.Cancel(admin_pb2.CancelRequest(job_id="wedged"))
        assert (await cluster.finished("wedged")).state is C
        await async_wait_until(lambda: vm_name("wedged", 1) in driver_of(node).destroyed, what="the VM destroyed")

        async def step_closed() -> bool:
            return [(s.index, s.state) for s in await cluster.store.steps("wedged", 1)] == [(0, StepState.CANCELLED)]
        await async_wait_until(step_closed, what="the step closed as cancelled")


async def test_retry_is_a_new_attempt_and_refused_while_running(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("flaky", steps=("exit 2",))]))
        assert (await cluster.finished("flaky")).state is F
        info = await admin.Retry(admin_pb2.RetryRequest(job_id="flaky"))
        assert info.attempt == 2 and info.state == jobs_pb2.JOB_STATE_QUEUED

        async def second_done() -> bool:
            record = await cluster.store.get_job("flaky")
            return record is not None and record.attempt == 2 and record.terminal
        await async_wait_until(second_done, what="attempt 2")
        attempts = await cluster.store.attempts("flaky")
        assert [(a.attempt, a.state) for a in attempts] == [(1, F), (2, F)]
        assert vm_name("flaky", 2) in driver_of(node).destroyed

        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("long", steps=("sleep 60",))]))
        await running(cluster, "long")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.Retry(admin_pb2.RetryRequest(job_id="long"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        await admin.Cancel(admin_pb2.CancelRequest(job_id="long"))
        await cluster.finished("long")


async def test_tail_logs_follows_live_until_the_job_ends(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("talk", steps=("echo one", "sleep 1", "echo two"))]))
        pages: list[admin_pb2.LogPage] = []
        states_at_first_line: list[JobState] = []
        async for page in admin.TailLogs(admin_pb2.TailLogsRequest(job_id="talk", follow=True)):
            if page.runs and not states_at_first_line:
                record = await cluster.store.get_job("talk")
                assert record is not None
                states_at_first_line.append(record.state)
            pages.append(page)
        assert [(ln.sequence, ln.step, ln.content) for ln in lines_of(pages)] == [(1, 0, b"one"), (2, 2, b"two")]
        assert pages[-1].end and not pages[-1].ended and pages[0].attempt == 1
        assert states_at_first_line == [R]  # the first line reached us while the job still ran
        await cluster.finished("talk")
        again = await collect(admin.TailLogs(admin_pb2.TailLogsRequest(job_id="talk", from_sequence=2)))
        assert [ln.content for ln in lines_of(again)] == [b"two"] and again[-1].end


async def test_hosts_and_ignored_transitions_are_visible(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings(capacity=3)) as node, admin_stub(node) as admin:
        hosts = (await admin.Hosts(admin_pb2.HostsRequest())).hosts
        assert [(h.name, list(h.labels), h.capacity, h.alive, h.draining) for h in hosts] == [
            ("node-a", ["lab-a"], 3, True, False)]
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("busy", steps=("sleep 60",))]))
        await running(cluster, "busy")

        async def one_running() -> bool:
            hosts = (await admin.Hosts(admin_pb2.HostsRequest())).hosts
            return hosts[0].running == 1  # reported by the node's heartbeat
        await async_wait_until(one_running, what="Hosts to show the running job")
        await admin.Cancel(admin_pb2.CancelRequest(job_id="busy"))
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("done")]))
        await cluster.finished("done")
        before = (await admin.Get(admin_pb2.GetJobRequest(job_id="done"))).ignored_transitions
        # A late runner report and a duplicate: neither is applied, both are counted.
        assert not await cluster.store.transition("done", 1, JobState.RUNNING)
        assert not await cluster.store.transition("done", 1, JobState.SUCCEEDED)
        info = await admin.Get(admin_pb2.GetJobRequest(job_id="done"))
        assert info.ignored_transitions == before + 2
        assert info.state == jobs_pb2.JOB_STATE_SUCCEEDED
        # A redelivered request of a finished job is acknowledged and runs nothing.
        acked = _acked(node)
        await cluster.publish(job("done"))
        await async_wait_until(lambda: _acked(node) == acked + 1, what="the redelivery acknowledged")
        assert [call for call, name in driver_of(node).events if name == vm_name("done", 1)].count("prepare") == 1
        assert cluster.events.job_states("done") == [Q, P, R, S]


async def test_cancel_through_another_node_reaches_the_one_running_it(cluster: Cluster) -> None:
    await cluster.declare("lab-b")
    async with cluster.node(cluster.settings()) as a, \
            cluster.node(cluster.settings(host="node-b", labels=("lab-b",))) as b, admin_stub(b) as admin_b:
        await cluster.publish(job("far", steps=("echo hi", "sleep 60")))
        await running(cluster, "far")
        info = await admin_b.Cancel(admin_pb2.CancelRequest(job_id="far", reason="from b"))
        assert info.state == jobs_pb2.JOB_STATE_CANCELLED and info.host == "node-a"
        record = await cluster.finished("far")
        assert (record.state, record.reason) == (C, "from b")
        await async_wait_until(lambda: vm_name("far", 1) in driver_of(a).destroyed, what="node-a destroys the VM")
        assert cluster.events.job_states("far") == [P, R, C]
        assert [e.host for e in cluster.events.terminal("far")] == ["node-a"]
        # its log was written on node-a; node-b reads it from the archive
        pages = await collect(admin_b.TailLogs(admin_pb2.TailLogsRequest(job_id="far")))
        assert [ln.content for ln in lines_of(pages)] == [b"hi"] and pages[-1].end and not pages[-1].ended
        assert driver_of(b).events == []


async def test_a_request_no_node_can_route_ends_failed_with_the_reason(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("nowhere", label="lab-nobody")]))
        record = await cluster.finished("nowhere")
        assert record.state is F and "unroutable" in record.reason
        assert cluster.events.job_states("nowhere") == [Q, F]
        assert driver_of(node).events == []


async def test_submit_validates_and_is_idempotent(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        no_label = job("x")
        no_label.runs_on = ""
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("fine"), no_label]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("jobs[1].runs_on: '' is not a valid runs_on label")
        assert await cluster.store.get_job("fine") is None  # nothing of a refused request is kept

        await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("once")]))
        await cluster.finished("once")
        again = await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("once")]))
        assert [(j.state, j.attempt) for j in again.jobs] == [(jobs_pb2.JOB_STATE_SUCCEEDED, 1)]
        assert await cluster.ready("lab-a") == 0 and _acked(node) == 1  # not even sent again
        assert [c for c, name in driver_of(node).events if name == vm_name("once", 1)].count("prepare") == 1
        assert cluster.events.job_states("once") == [Q, P, R, S]  # no second `queued`


async def test_a_job_taken_back_from_a_lost_host_shows_both_attempts(cluster: Cluster) -> None:
    # node-b ran "lost" and went silent (it never heartbeats here); node-a's sweep takes the job back.
    await cluster.store.register_host("node-b", ["lab-a"], capacity=2)
    await cluster.store.heartbeat("node-b", running=1)
    await cluster.store.submit(job("lost"))
    assert await cluster.store.claim("lost", 1, "node-b", vm_name("lost", 1))
    assert await cluster.store.transition("lost", 1, JobState.RUNNING)
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        async def ran_again() -> bool:
            record = await cluster.store.get_job("lost")
            return record is not None and record.attempt == 2 and record.state is S
        await async_wait_until(ran_again, timeout=60, what="attempt 2 to succeed on node-a")
        info = await admin.Get(admin_pb2.GetJobRequest(job_id="lost"))
        stale = cluster.settings().timers.stale_after
        assert [(a.attempt, a.host, a.state, a.reason) for a in info.attempts] == [
            (1, "node-b", jobs_pb2.JOB_STATE_ERRORED,
             f"host node-b sent no heartbeat for over {stale:g}s during attempt 1; requeued as attempt 2"),
            (2, "node-a", jobs_pb2.JOB_STATE_SUCCEEDED, ""),
        ]
        first, second = info.attempts
        assert first.started_at.ToDatetime() <= first.finished_at.ToDatetime() <= second.started_at.ToDatetime()
        hosts = {h.name: h for h in (await admin.Hosts(admin_pb2.HostsRequest())).hosts}
        assert (hosts["node-b"].alive, hosts["node-b"].running) == (False, 0)  # not its last report of 1
        assert hosts["node-b"].heartbeat_age_seconds > stale
