"""Heartbeat lapse: the jobs of a host that went silent run again elsewhere as a new attempt;
after ``max_attempts`` the job ends ``errored``. A restarted node takes back its own attempts."""

from __future__ import annotations

from common.config import Seconds
from orchestrator.names import vm_name
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import driver_of, job
from tests.waiting import async_wait_until

Q, P, R, S, E = JobState.QUEUED, JobState.PROVISIONING, JobState.RUNNING, JobState.SUCCEEDED, JobState.ERRORED


async def ghost_holds(cluster: Cluster, job_id: str, attempts: int) -> None:
    """Host ``ghost`` (which then stops heartbeating) holds attempt ``attempts`` of ``job_id``, running."""
    store = cluster.store
    await store.register_host("ghost", ["lab-a"], 2)
    await store.submit(job(job_id))
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            assert (await store.retry(job_id)).attempt == attempt
        assert await store.claim(job_id, attempt, "ghost", vm_name(job_id, attempt))
        assert await store.transition(job_id, attempt, R)
        if attempt < attempts:
            assert await store.transition(job_id, attempt, E, "an earlier failure")


async def attempt_done(cluster: Cluster, job_id: str, attempt: int) -> None:
    async def done() -> bool:
        record = await cluster.store.get_job(job_id)
        return record is not None and record.attempt == attempt and record.terminal
    await async_wait_until(done, what=f"{job_id} attempt {attempt} to end")


async def test_jobs_of_a_silent_host_run_again_as_a_new_attempt(cluster: Cluster) -> None:
    await ghost_holds(cluster, "orphan", attempts=1)
    async with cluster.node(cluster.settings()) as node:
        await attempt_done(cluster, "orphan", 2)
        attempts = await cluster.store.attempts("orphan")
        assert [(a.attempt, a.state, a.host) for a in attempts] == [(1, E, "ghost"), (2, S, "node-a")]
        assert "host ghost sent no heartbeat" in attempts[0].reason and "requeued as attempt 2" in attempts[0].reason
        assert vm_name("orphan", 2) in driver_of(node).destroyed
        # events: the requeue (attempt 2 queued), then attempt 2's life on node-a
        await cluster.events.settled("orphan", [Q, P, R, S])
        states = [(e.attempt, JobState(e.state)) for e in cluster.events.events
                  if e.job_id == "orphan" and not e.HasField("step")]
        assert states == [(2, Q), (2, P), (2, R), (2, S)]
    hosts = {h.name: h for h in await cluster.store.list_hosts(stale_after=2)}
    assert not hosts["ghost"].alive


async def test_attempts_are_bounded_then_the_job_is_errored(cluster: Cluster) -> None:
    await ghost_holds(cluster, "doomed", attempts=2)
    async with cluster.node(cluster.settings(timers__max_attempts=2)) as node:
        record = await cluster.finished("doomed")
        assert record.state is E and record.attempt == 2
        assert "gave up after 2 attempts" in record.reason
        assert [e.reason for e in cluster.events.terminal("doomed")] == [record.reason]
        assert driver_of(node).events == []  # nothing ran here


async def test_a_partitioned_node_loses_its_job_and_aborts_its_copy(cluster: Cluster) -> None:
    """Node B stops heartbeating while it runs a job: A requeues it, B's store watcher aborts B's
    attempt (VM destroyed, no final state written by B), and A runs attempt 2."""
    quick = {"timers__stale_after": Seconds(1.5), "timers__shutdown_grace": Seconds(0.2)}
    b_settings = cluster.settings(host="node-b", **quick)
    async with cluster.node(b_settings) as b:
        await cluster.publish(job("split", steps=("sleep 30",)))

        async def running_on_b() -> bool:
            record = await cluster.store.get_job("split")
            return record is not None and record.state is R and record.host == "node-b"
        await async_wait_until(running_on_b, what="split running on node-b")
        b._loops["heartbeat"].cancel()  # node-b goes silent...
        b.set_draining(True)  # ...and takes no more work, so attempt 2 must go to node-a
        async with cluster.node(cluster.settings(**quick)) as a:
            await async_wait_until(lambda: vm_name("split", 1) in driver_of(b).destroyed, timeout=30,
                                   what="node-b to abort its attempt")
            attempts = await cluster.store.attempts("split")
            assert (attempts[0].state, attempts[0].host) == (E, "node-b")
            assert "node-b sent no heartbeat" in attempts[0].reason

            async def on_a() -> bool:
                record = await cluster.store.get_job("split")
                return record is not None and record.attempt == 2 and record.state is R and record.host == "node-a"
            await async_wait_until(on_a, what="attempt 2 running on node-a")
            await async_wait_until(lambda: b.scheduler is not None and b.scheduler.idle, what="node-b idle")
            assert driver_of(b).live == 0
            # node-b's aborted attempt never published a final state of its own
            assert [e for e in cluster.events.terminal("split")] == []
            assert driver_of(a).live == 1


async def test_a_restarted_node_takes_back_what_it_held(cluster: Cluster) -> None:
    settings = cluster.settings()
    await cluster.store.register_host("node-a", ["lab-a"], 4)
    await cluster.store.submit(job("held"))
    assert await cluster.store.claim("held", 1, "node-a", vm_name("held", 1))
    (settings.drivers.local.state_dir / vm_name("held", 1)).mkdir(parents=True)  # its VM outlived the crash
    async with cluster.node(settings) as node:
        await attempt_done(cluster, "held", 2)
        attempts = await cluster.store.attempts("held")
        assert [(a.attempt, a.state) for a in attempts] == [(1, E), (2, S)]
        assert "host node-a restarted during attempt 1" in attempts[0].reason
        assert vm_name("held", 1) in driver_of(node).destroyed  # reconciled away at start
