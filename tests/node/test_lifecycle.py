"""One job's life on a single node (SQLite + LocalQueue + instant driver).

claim -> provision -> wait for the runner -> run -> teardown ALWAYS ->
finalize -> event; each phase timeout ends the job ``errored`` with a reason
that says which phase (plus the console tail), and the VM is destroyed on
every path.
"""

from __future__ import annotations

from pathlib import Path

from common.config import Seconds
from common.rpc import jobs_pb2
from orchestrator.names import vm_name
from orchestrator.store import JobState, StepState
from tests.node.harness import LocalNode, job, local_node, local_settings
from tests.waiting import async_wait_until

P, R, S, F, E = (JobState.PROVISIONING, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED,
                 JobState.ERRORED)


async def finished(node: LocalNode, job_id: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """The job once it is terminal AND its final event arrived."""
    async def done():  # type: ignore[no-untyped-def]
        record = await node.store.get_job(job_id)
        if record is not None and record.terminal and node.events.terminal(job_id):
            return record
        return None
    return await async_wait_until(done, timeout=timeout, what=f"job {job_id} to finish")


def destroyed(node: LocalNode, job_id: str, attempt: int = 1) -> bool:
    vm = vm_name(job_id, attempt)
    return vm in node.driver.destroyed and not (node.driver.state_dir / vm).exists()


async def test_success_runs_every_phase_in_order_and_tears_down(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        await node.publish(job("ok", steps=("echo hello", "true")))
        record = await finished(node, "ok")
        assert record.state is S and record.attempt == 1 and record.host == "node-a"
        steps = await node.store.steps("ok", 1)
        assert [(s.index, s.state) for s in steps] == [(0, StepState.SUCCEEDED), (1, StepState.SUCCEEDED)]
        vm = vm_name("ok", 1)
        assert [call for call, name in node.driver.events if name == vm] == [
            "prepare", "boot", "stop", "stop", "destroy"]  # destroy stops again: idempotent teardown
        assert destroyed(node, "ok")
        assert node.events.job_states("ok") == [P, R, S]
        step_events = [(e.step.index, e.step.state) for e in node.events.events if e.job_id == "ok" and e.HasField("step")]
        assert step_events == [(0, jobs_pb2.STEP_STATE_RUNNING), (0, jobs_pb2.STEP_STATE_SUCCEEDED),
                               (1, jobs_pb2.STEP_STATE_RUNNING), (1, jobs_pb2.STEP_STATE_SUCCEEDED)]
        # the job-level and step-level events come in causal order
        kinds = [("step" if e.HasField("step") else JobState(e.state).name) for e in node.events.events
                 if e.job_id == "ok"]
        assert kinds[0] == "PROVISIONING" and kinds[1] == "RUNNING" and kinds[-1] == "SUCCEEDED"
        log = await (await node.node.parts.gateway.logstore.open("ok", 1, create=False)).read_all()
        assert [line.content for line in log] == [b"hello"]
        assert node.node.scheduler is not None and node.node.scheduler.idle
        assert node.node.capacity.in_use == 0


async def test_failing_step_fails_the_job_and_still_tears_down(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        await node.publish(job("bad", steps=("true", "exit 3", "true")))
        record = await finished(node, "bad")
        assert record.state is F
        assert "exited with 3" in record.reason
        steps = await node.store.steps("bad", 1)
        assert [(s.index, s.state, s.exit_code) for s in steps] == [
            (0, StepState.SUCCEEDED, 0), (1, StepState.FAILED, 3)]
        assert destroyed(node, "bad")
        assert node.events.job_states("bad") == [P, R, F]
        assert node.events.terminal("bad")[0].reason == record.reason


async def test_prepare_failure_is_errored_with_the_driver_reason(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        node.driver.fail_prepare.add("np")
        await node.publish(job("np"))
        record = await finished(node, "np")
        assert record.state is E
        assert "cannot prepare" in record.reason and "injected failure" in record.reason
        assert destroyed(node, "np")
        assert ("boot", vm_name("np", 1)) not in node.driver.events
        assert node.events.job_states("np") == [P, E]


async def test_boot_timeout_is_errored_and_names_the_phase(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timeouts__boot=Seconds(0.5))
    async with local_node(settings) as node:
        node.driver.hang_boot.add("hang")
        await node.publish(job("hang"))
        record = await finished(node, "hang")
        assert record.state is E
        assert record.reason == "booting the VM did not finish within 0.5s"  # no console yet: none quoted
        assert destroyed(node, "hang")
        assert node.events.job_states("hang") == [P, E]


async def test_runner_never_calling_in_is_errored_with_the_console_tail(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timeouts__runner=Seconds(0.5))
    async with local_node(settings) as node:
        node.driver.silent.add("mute")
        await node.publish(job("mute"))
        record = await finished(node, "mute")
        assert record.state is E
        vm = vm_name("mute", 1)
        assert "0.5" in record.reason and "runner" in record.reason.lower()
        assert f"{vm}: booted" in record.reason  # the console tail the driver kept
        assert destroyed(node, "mute")
        assert node.events.job_states("mute") == [P, E]
        assert node.events.terminal("mute")[0].reason == record.reason


async def test_job_timeout_is_errored_and_the_vm_destroyed(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timeouts__job_margin=Seconds(0.2))
    async with local_node(settings) as node:
        await node.publish(job("slow", steps=("sleep 60",), timeout=0.5))
        record = await finished(node, "slow")
        assert record.state is E
        assert record.reason.startswith("the runner did not finish within the job timeout of 0.5s\n")
        assert record.reason.endswith(f"console (last lines):\n{vm_name('slow', 1)}: booted")
        assert destroyed(node, "slow")
        assert node.events.job_states("slow") == [P, R, E]
        # the runner's started step was recorded before the VM went away, and ended with the attempt
        assert [s.state for s in await node.store.steps("slow", 1)] == [StepState.CANCELLED]


async def test_cancel_while_booting_stops_at_once_and_tears_down(tmp_path: Path) -> None:
    from common.rpc import admin_pb2
    from tests.node.harness import admin_stub

    async with local_node(local_settings(tmp_path, timeouts__boot=Seconds(60))) as node, \
            admin_stub(node.node) as admin:
        node.driver.hang_boot.add("stuck")
        await node.publish(job("stuck"))
        await async_wait_until(lambda: ("boot", vm_name("stuck", 1)) in node.driver.events, what="booting")
        await admin.Cancel(admin_pb2.CancelRequest(job_id="stuck", reason="no longer needed"))
        record = await finished(node, "stuck")
        assert (record.state, record.reason) == (JobState.CANCELLED, "no longer needed")
        await async_wait_until(lambda: destroyed(node, "stuck"), what="teardown")
        assert node.events.job_states("stuck") == [P, JobState.CANCELLED]


async def test_a_restarted_single_node_runs_what_it_held_again(tmp_path: Path) -> None:
    from orchestrator.store import open_store

    settings = local_settings(tmp_path)
    async with open_store(settings.store_url) as store:  # as if the last process claimed it and died
        await store.register_host("node-a", ["lab-a"], 4)
        await store.submit(job("held"))
        assert await store.claim("held", 1, "node-a", vm_name("held", 1))
    (settings.drivers.local.state_dir / vm_name("held", 1)).mkdir(parents=True)
    async with local_node(settings) as node:
        record = await async_wait_until(lambda: _attempt_done(node, "held", 2), what="attempt 2")
        assert record.state is S
        assert [(a.attempt, a.state) for a in await node.store.attempts("held")] == [(1, E), (2, S)]
        assert vm_name("held", 1) in node.driver.destroyed  # the old VM, reconciled at start
        assert node.events.job_states("held") == [JobState.QUEUED, P, R, S]


async def _attempt_done(node: LocalNode, job_id: str, attempt: int):  # type: ignore[no-untyped-def]
    record = await node.store.get_job(job_id)
    ok = record is not None and record.attempt == attempt and record.terminal and node.events.terminal(job_id)
    return record if ok else None


async def test_prepare_timeout_is_errored_and_names_the_phase(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path, timeouts__prepare=Seconds(0.3))) as node:
        node.driver.hang_prepare.add("slowprep")
        await node.publish(job("slowprep"))
        record = await finished(node, "slowprep")
        assert record.state is E
        assert record.reason.startswith("preparing the VM did not finish within 0.3s")
        assert destroyed(node, "slowprep")
        assert ("boot", vm_name("slowprep", 1)) not in node.driver.events


async def test_a_failed_teardown_still_finalizes_and_reconciliation_retries_it(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timers__reconcile=Seconds(0.2))
    async with local_node(settings) as node:
        vm = vm_name("sticky", 1)
        node.driver.fail_destroy.add(vm)
        await node.publish(job("sticky"))
        record = await finished(node, "sticky")
        assert record.state is S  # the job's result does not depend on its VM's teardown
        assert ("destroy failed", vm) in node.driver.events
        await async_wait_until(lambda: destroyed(node, "sticky"), what="the reconciler to reap the VM")
        assert node.driver.live == 0


async def test_a_dead_letter_fails_only_a_job_nobody_holds(tmp_path: Path) -> None:
    from common.config import Seconds

    async with local_node(local_settings(tmp_path, timers__shutdown_grace=Seconds(0.2))) as node:
        scheduler = node.node.scheduler
        assert scheduler is not None
        await node.publish(job("held-elsewhere", steps=("sleep 30",)))

        async def running() -> bool:
            record = await node.store.get_job("held-elsewhere")
            return record is not None and record.state is JobState.RUNNING
        await async_wait_until(running, what="the job running")
        await scheduler.on_dead_letter("held-elsewhere", "poison: redelivered too often")
        record = await node.store.get_job("held-elsewhere")
        assert record is not None and record.state is JobState.RUNNING  # left alone

        await node.store.submit(job("waiting", label="lab-z"))  # queued, no node serves lab-z
        await scheduler.on_dead_letter("waiting", "unroutable: no queue serves lab-z")
        record = await finished(node, "waiting")
        assert (record.state, record.reason) == (JobState.FAILED, "unroutable: no queue serves lab-z")
        await scheduler.on_dead_letter("waiting", "unroutable: again")  # at-least-once: a second call
        assert [e.reason for e in node.events.terminal("waiting")] == ["unroutable: no queue serves lab-z"]


async def test_single_node_shutdown_requeues_into_its_own_queue_and_restart_runs_it(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timers__shutdown_grace=Seconds(0.2))
    async with local_node(settings) as node:
        await node.publish(job("cut", steps=("sleep 1.5",)))

        async def running() -> bool:
            record = await node.store.get_job("cut")
            return record is not None and record.state is R
        await async_wait_until(running, what="cut running")
    # closed past the grace: attempt 1 ended, attempt 2 queued in the local queue
    from orchestrator.store import open_store
    async with open_store(settings.store_url) as store:
        record = await store.get_job("cut")
        assert record is not None and (record.state, record.attempt) == (JobState.QUEUED, 2)
    async with local_node(settings) as node:
        record = await async_wait_until(lambda: _attempt_done(node, "cut", 2), what="attempt 2 after restart")
        assert record.state is S
        assert vm_name("cut", 2) in node.driver.destroyed


async def test_a_new_attempt_arriving_while_the_old_winds_down_here_still_runs(tmp_path: Path) -> None:
    """The request of attempt 2 reaches the node still holding attempt 1 (a retry right after the
    end, or a requeue after a heartbeat lapse): attempt 1 is let go, attempt 2 runs."""
    from common.queue.disposition import Disposition

    settings = local_settings(tmp_path, timers__cancel_poll=Seconds(30))  # no help from the store watcher
    async with local_node(settings) as node:
        scheduler = node.node.scheduler
        assert scheduler is not None
        request = job("twice", steps=("sleep 2",))
        await node.publish(request)

        async def running() -> bool:
            record = await node.store.get_job("twice")
            return record is not None and record.state is R
        await async_wait_until(running, what="attempt 1 running")
        # the store moves on: attempt 1 ended elsewhere's say-so, attempt 2 queued
        assert await node.store.transition("twice", 1, E, "a lapsed heartbeat")
        assert (await node.store.retry("twice")).attempt == 2
        assert await scheduler.on_job(request) == Disposition.ACK  # attempt 2's request, as republished
        record = await async_wait_until(lambda: _attempt_done(node, "twice", 2), what="attempt 2")
        assert record.state is S and record.host == "node-a"
        assert vm_name("twice", 1) in node.driver.destroyed and vm_name("twice", 2) in node.driver.destroyed
        assert [(a.attempt, a.state) for a in await node.store.attempts("twice")] == [(1, E), (2, S)]
        assert scheduler.idle


async def test_a_job_timeout_over_the_nodes_limit_is_refused_failed_without_a_vm(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        await node.publish(job("forever", timeout=48 * 3600.0))  # past timeouts.job_max (24 h)
        record = await finished(node, "forever")
        assert record.state is F
        assert record.reason == "the job timeout of 172800s is over this node's limit of 86400s (timeouts.job_max)"
        assert [call for call, name in node.driver.events if call == "boot"] == []  # no VM was started
        assert node.events.job_states("forever")[-1] is F
