"""``needs``: a job runs only after every job it needs succeeded; a failed need cancels it."""

from __future__ import annotations

from pathlib import Path

from common.config import Seconds
from orchestrator.names import vm_name
from orchestrator.store import JobState
from tests.node.harness import LocalNode, job, local_node, local_settings
from tests.waiting import async_wait_until


async def done(node: LocalNode, job_id: str):  # type: ignore[no-untyped-def]
    async def check():  # type: ignore[no-untyped-def]
        record = await node.store.get_job(job_id)
        return record if record is not None and record.terminal and node.events.terminal(job_id) else None
    return await async_wait_until(check, what=f"{job_id} to finish")


def calls(node: LocalNode, job_id: str) -> list[str]:
    return [call for call, name in node.driver.events if name == vm_name(job_id, 1)]


async def test_a_job_whose_need_failed_is_not_run(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        await node.publish(job("r1-test", run_id="r1", key="test", needs=("build",)),
                           job("r1-build", run_id="r1", key="build", steps=("exit 1",)))
        assert (await done(node, "r1-build")).state is JobState.FAILED
        record = await done(node, "r1-test")
        assert record.state is JobState.CANCELLED
        assert record.reason == "dependency build failed"
        assert calls(node, "r1-test") == []  # no VM was ever made for it
        assert [JobState(e.state) for e in node.events.terminal("r1-test")] == [JobState.CANCELLED]
        assert node.events.terminal("r1-test")[0].reason == "dependency build failed"
        # and the failure travels down the chain
        await node.publish(job("r1-deploy", run_id="r1", key="deploy", needs=("test",)))
        assert (await done(node, "r1-deploy")).reason == "dependency test failed"


async def test_dependents_run_after_their_needs_succeed(tmp_path: Path) -> None:
    # capacity 1: the held dependents must not take the only slot from what they wait for
    async with local_node(local_settings(tmp_path, capacity=1)) as node:
        await node.publish(
            job("r2-c", run_id="r2", key="c", needs=("a", "b")),
            job("r2-b", run_id="r2", key="b", needs=("a",)),
            job("r2-a", run_id="r2", key="a", steps=("sleep 0.3",)),
        )
        for jid in ("r2-a", "r2-b", "r2-c"):
            assert (await done(node, jid)).state is JobState.SUCCEEDED
        order = node.driver.events
        assert order.index(("destroy", vm_name("r2-a", 1))) < order.index(("prepare", vm_name("r2-b", 1)))
        assert order.index(("destroy", vm_name("r2-b", 1))) < order.index(("prepare", vm_name("r2-c", 1)))
        a_end = (await node.store.attempts("r2-a"))[0].finished_at
        b_start = (await node.store.attempts("r2-b"))[0].started_at
        assert a_end is not None and b_start is not None and a_end <= b_start
        assert node.node.scheduler is not None and node.node.scheduler.waiting == 0


async def test_a_need_of_another_run_does_not_count(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        await node.publish(job("r3-a", run_id="r3", key="a", steps=("exit 1",)))
        assert (await done(node, "r3-a")).state is JobState.FAILED
        # run r4's "a" is its own job: r3's failure is no reason to cancel r4's "b"
        await node.publish(job("r4-b", run_id="r4", key="b", needs=("a",)), job("r4-a", run_id="r4", key="a"))
        assert (await done(node, "r4-b")).state is JobState.SUCCEEDED


async def test_a_held_job_cancelled_meanwhile_ends_once(tmp_path: Path) -> None:
    """Cancelled by an operator while held, then its need fails: one `cancelled`, one event."""
    from common.rpc import admin_pb2
    from tests.node.harness import admin_stub

    async with local_node(local_settings(tmp_path)) as node, admin_stub(node.node) as admin:
        await node.publish(job("r5-b", run_id="r5", key="b", needs=("a",)),
                           job("r5-a", run_id="r5", key="a", steps=("sleep 0.5", "exit 1")))

        async def held() -> bool:
            return node.node.scheduler is not None and node.node.scheduler.waiting == 1
        await async_wait_until(held, what="b held for a")
        await admin.Cancel(admin_pb2.CancelRequest(job_id="r5-b", reason="operator"))
        assert (await done(node, "r5-a")).state is JobState.FAILED
        await async_wait_until(lambda: node.node.scheduler.waiting == 0, what="the hold to end")  # type: ignore[union-attr]
        record = await done(node, "r5-b")
        assert (record.state, record.reason) == (JobState.CANCELLED, "operator")
        assert [e.reason for e in node.events.terminal("r5-b")] == ["operator"]
        assert calls(node, "r5-b") == []


async def test_past_max_waiting_dependents_go_round_the_queue_and_still_run(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, node__max_waiting=1)
    async with local_node(settings) as node:
        scheduler = node.node.scheduler
        assert scheduler is not None
        most = 0

        def observe() -> bool:
            nonlocal most
            most = max(most, scheduler.waiting)
            return False

        dependents = [job(f"r6-b{i}", run_id="r6", key=f"b{i}", needs=("a",)) for i in range(3)]
        await node.publish(*dependents, job("r6-a", run_id="r6", key="a", steps=("sleep 0.8",)))
        for i in range(3):
            async def check(jid: str = f"r6-b{i}"):  # type: ignore[no-untyped-def]
                observe()
                return await done_now(node, jid)
            assert (await async_wait_until(check, what=f"r6-b{i}")).state is JobState.SUCCEEDED
        assert most == 1  # never more than max_waiting held; the others were republished


async def done_now(node: LocalNode, job_id: str):  # type: ignore[no-untyped-def]
    record = await node.store.get_job(job_id)
    return record if record is not None and record.terminal else None


async def test_a_need_never_submitted_fails_the_job_after_needs_wait(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timers__needs_wait=Seconds(1))
    async with local_node(settings) as node:
        await node.publish(job("r7-b", run_id="r7", key="b", needs=("a", "gone")),
                           job("r7-a", run_id="r7", key="a"))
        record = await done(node, "r7-b")
        assert record.state is JobState.FAILED
        assert record.reason.startswith("needs gone did not finish within 1s")  # "a" succeeded: not named
        assert [e.reason for e in node.events.terminal("r7-b")] == [record.reason]
        assert calls(node, "r7-b") == []
        await async_wait_until(lambda: node.node.scheduler.waiting == 0, what="the hold to end")  # type: ignore[union-attr]
        # a job whose needs finish in time is not touched by the bound
        await node.publish(job("r8-b", run_id="r8", key="b", needs=("a",)), job("r8-a", run_id="r8", key="a"))
        assert (await done(node, "r8-b")).state is JobState.SUCCEEDED
