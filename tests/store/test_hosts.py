"""Hosts: registration, heartbeats, draining, and taking jobs back from hosts that went quiet."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from orchestrator.store import HostNotFound, JobState, Store
from tests.store.conftest import drive, job
from tests.waiting import async_wait_until

# How long a heartbeat may be silent before a host counts as lapsed in these tests: long enough
# that a host that heartbeats just before a sweep is never mistaken for a lapsed one.
LAPSE = 1.0


async def lapse(store: Store, dead: list[str], live: Sequence[str] = ()) -> None:
    """Wait until every ``dead`` host's heartbeat is older than LAPSE (by the database's clock); heartbeat ``live``."""
    async def lapsed() -> bool:
        hosts = {host.name: host for host in await store.list_hosts(stale_after=LAPSE)}
        return all(not hosts[name].alive for name in dead)

    await async_wait_until(lapsed, timeout=10 * LAPSE, what=f"hosts {dead} to lapse")
    for name in live:
        await store.heartbeat(name, running=1)


async def test_register_heartbeat_drain(store: Store) -> None:
    registered = await store.register_host("host-b", ["illumos", "linux"], capacity=4)
    assert (registered.name, registered.labels, registered.capacity, registered.running) == (
        "host-b", ("illumos", "linux"), 4, 0)
    assert registered.alive and not registered.draining
    await store.register_host("host-a", ["illumos"], capacity=2)
    beat = await store.heartbeat("host-b", running=3)
    assert beat.running == 3 and beat.last_heartbeat >= registered.last_heartbeat
    drained = await store.set_draining("host-b", True)
    assert drained.draining
    # Re-registering (a restart) updates what the host offers but keeps the operator's drain.
    again = await store.register_host("host-b", ["linux"], capacity=8)
    assert (again.labels, again.capacity, again.running, again.draining) == (("linux",), 8, 0, True)
    assert [host.name for host in await store.list_hosts()] == ["host-a", "host-b"]
    assert not (await store.set_draining("host-b", False)).draining


async def test_unknown_hosts_are_errors(store: Store) -> None:
    with pytest.raises(HostNotFound, match="ghost"):
        await store.heartbeat("ghost", running=0)
    with pytest.raises(HostNotFound):
        await store.set_draining("ghost", True)
    with pytest.raises(ValueError):
        await store.register_host("", [], capacity=1)
    with pytest.raises(ValueError):
        await store.register_host("h", [], capacity=-1)


async def test_alive_follows_the_heartbeat_age(store: Store) -> None:
    await store.register_host("host-a", ["illumos"], capacity=1)
    await store.register_host("host-b", ["illumos"], capacity=1)
    await store.heartbeat("host-a", running=1)
    await lapse(store, dead=["host-a"], live=["host-b"])
    hosts = {host.name: host for host in await store.list_hosts(stale_after=LAPSE)}
    assert not hosts["host-a"].alive and hosts["host-a"].heartbeat_age > LAPSE
    assert hosts["host-a"].running == 0  # a dead host runs nothing, whatever it last reported
    assert hosts["host-b"].alive and hosts["host-b"].running == 1
    assert all(host.alive for host in await store.list_hosts(stale_after=3600))


async def test_requeue_lapsed_gives_jobs_a_new_attempt(store: Store) -> None:
    await store.register_host("dead", ["illumos"], capacity=4)
    await store.register_host("live", ["illumos"], capacity=4)
    await drive(store, "p", JobState.PROVISIONING, host="dead")
    await drive(store, "r", JobState.RUNNING, host="dead")
    await drive(store, "done", JobState.SUCCEEDED, host="dead")
    await drive(store, "mine", JobState.RUNNING, host="live")
    await drive(store, "orphan", JobState.RUNNING, host="never-registered")
    await drive(store, "waiting", JobState.QUEUED)
    assert await store.requeue_lapsed(LAPSE, max_attempts=3) == []  # nobody has lapsed yet

    await lapse(store, dead=["dead"], live=["live"])
    changed = await store.requeue_lapsed(LAPSE, max_attempts=3)
    assert sorted(record.job_id for record in changed) == ["p", "r"]
    for record in changed:
        assert (record.state, record.attempt, record.host) == (JobState.QUEUED, 2, "")
        assert "dead" in record.reason and "attempt 2" in record.reason
        old, new = await store.attempts(record.job_id)
        assert (old.state, old.host, new.state, new.attempt) == (JobState.ERRORED, "dead", JobState.QUEUED, 2)
        assert old.finished_at is not None
    for job_id, state in [("done", JobState.SUCCEEDED), ("mine", JobState.RUNNING),
                          ("orphan", JobState.RUNNING), ("waiting", JobState.QUEUED)]:
        record = await store.get_job(job_id)
        assert record is not None and (record.state, record.attempt) == (state, 1), job_id
    assert await store.live_vm_names("dead") == set()
    assert await store.live_vm_names("live") == {"vm-mine"}
    # The dead host coming back to report on its old attempt is ignored; another host runs the new one.
    assert not await store.transition("r", 1, JobState.SUCCEEDED)
    assert await store.claim("r", 2, "live", "vm-r2")
    assert await store.requeue_lapsed(LAPSE, max_attempts=3) == []  # nothing twice


async def test_requeue_lapsed_gives_up_after_max_attempts(store: Store) -> None:
    await store.register_host("dead", ["illumos"], capacity=4)
    await store.submit(job("j1"))
    for attempt in (1, 2):
        assert await store.claim("j1", attempt, "dead", f"vm-{attempt}")
        await store.heartbeat("dead", running=1)
        await lapse(store, dead=["dead"])
        [record] = await store.requeue_lapsed(LAPSE, max_attempts=2)
        if attempt == 1:
            assert (record.state, record.attempt) == (JobState.QUEUED, 2)
    assert (record.state, record.attempt) == (JobState.ERRORED, 2)
    assert "gave up after 2 attempts" in record.reason
    assert [a.state for a in await store.attempts("j1")] == [JobState.ERRORED, JobState.ERRORED]
    with pytest.raises(ValueError):
        await store.requeue_lapsed(LAPSE, max_attempts=0)


async def test_requeue_host_takes_back_a_restarted_nodes_jobs(store: Store) -> None:
    await store.register_host("host-a", ["illumos"], capacity=4)
    await drive(store, "p", JobState.PROVISIONING, host="host-a")
    await drive(store, "r", JobState.RUNNING, host="host-a")
    await drive(store, "done", JobState.FAILED, host="host-a")
    await drive(store, "other", JobState.RUNNING, host="host-b")
    await drive(store, "last", JobState.RUNNING, host="host-a")
    # No heartbeat has lapsed: a quick restart must still recover what the old process held.
    changed = {record.job_id: record for record in await store.requeue_host("host-a", max_attempts=3)}
    assert sorted(changed) == ["last", "p", "r"]
    assert all((r.state, r.attempt) == (JobState.QUEUED, 2) for r in changed.values())
    assert "host host-a restarted during attempt 1" in changed["p"].reason
    assert (await store.get_job("other")).state is JobState.RUNNING  # type: ignore[union-attr]
    assert (await store.get_job("done")).attempt == 1  # type: ignore[union-attr]
    assert await store.live_vm_names("host-a") == set()
    assert await store.requeue_host("host-a", max_attempts=3) == []
    assert await store.claim("p", 2, "host-a", "vm-p2")
    [gave_up] = await store.requeue_host("host-a", max_attempts=2, why="was drained by force")
    assert (gave_up.job_id, gave_up.state) == ("p", JobState.ERRORED)
    assert "host host-a was drained by force during attempt 2; gave up after 2 attempts" == gave_up.reason


async def test_requeue_host_leaves_what_it_is_told_to_keep_and_fresh_claims(store: Store) -> None:
    await store.register_host("host-a", ["illumos"], capacity=4)
    await drive(store, "kept", JobState.RUNNING, host="host-a")
    await drive(store, "fresh", JobState.PROVISIONING, host="host-a")
    assert await store.requeue_host("host-a", max_attempts=3, keep={"kept"}, claimed_before=3600) == []
    [taken] = await store.requeue_host("host-a", max_attempts=3, keep={"kept"})
    assert (taken.job_id, taken.state, taken.attempt) == ("fresh", JobState.QUEUED, 2)
    assert (await store.get_job("kept")).state is JobState.RUNNING  # type: ignore[union-attr]
