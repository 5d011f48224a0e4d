"""``submit_claimed``: a new job stored already claimed, with its events, in one step; an existing
job left as it is. On both back-ends, and racing across hosts."""

from __future__ import annotations

import asyncio

import pytest

from common.rpc import jobs_pb2
from orchestrator.store import JobState, Store
from tests.store.conftest import OpenStores, drive, job


def event(n: int, job_id: str = "j1") -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(event_id=f"e{n}" if job_id == "j1" else f"e{n}-{job_id}", job_id=job_id, reason=f"r{n}")


async def test_a_new_job_is_stored_claimed_with_its_events(store: Store) -> None:
    record = await store.submit_claimed(job("j1", name="Build"), "host-a", "vm-1", [event(1), event(2)])
    assert record is not None
    assert (record.job_id, record.attempt, record.state, record.host, record.name) == (
        "j1", 1, JobState.PROVISIONING, "host-a", "Build")
    assert record == await store.get_job("j1")
    [attempt] = await store.attempts("j1")
    assert (attempt.state, attempt.host, attempt.vm_name) == (JobState.PROVISIONING, "host-a", "vm-1")
    assert await store.live_vm_names("host-a") == {"vm-1"}
    assert [e.event_id for _, e in await store.outbox_rows("host-a")] == ["e1", "e2"]
    # from here on it is an ordinary claimed attempt
    assert await store.claim("j1", 1, "host-a", "vm-1")  # a redelivery to the holder
    assert not await store.claim("j1", 1, "host-b", "vm-2")
    assert await store.transition("j1", 1, JobState.RUNNING)


async def test_an_existing_job_is_left_as_it_is(store: Store) -> None:
    queued = await store.submit(job("j1"))
    assert await store.submit_claimed(job("j1"), "host-a", "vm-1", [event(1)]) is None
    assert await store.get_job("j1") == queued  # still queued, nobody's
    assert await store.outbox_rows("host-a") == []
    await drive(store, "j2", JobState.SUCCEEDED)
    finished = await store.get_job("j2")
    assert await store.submit_claimed(job("j2"), "host-a", "vm-2") is None
    assert await store.get_job("j2") == finished
    assert len(await store.attempts("j2")) == 1


async def test_without_events_or_host_or_job_id(store: Store) -> None:
    record = await store.submit_claimed(job("j1"), "host-a", "vm-1")
    assert record is not None and record.state is JobState.PROVISIONING
    assert await store.outbox_rows("host-a") == []
    with pytest.raises(ValueError, match="host"):
        await store.submit_claimed(job("j2"), "", "vm-2")
    with pytest.raises(ValueError, match="job_id"):
        await store.submit_claimed(job(""), "host-a", "vm-3")
    assert await store.get_job("j2") is None


async def test_racing_hosts_store_and_claim_each_job_once(store: Store, open_stores: OpenStores) -> None:
    hosts = await open_stores(5)
    jobs = [f"j{n}" for n in range(20)]

    async def take(index: int, host: Store) -> list[str]:
        records = await asyncio.gather(*(
            host.submit_claimed(job(j), f"host-{index}", f"vm-{index}-{j}", [event(index, j)]) for j in jobs))
        return [r.job_id for r in records if r is not None]

    won = await asyncio.gather(*(take(index, host) for index, host in enumerate(hosts)))
    assert sorted(j for ids in won for j in ids) == sorted(jobs)  # each job once, none lost
    for index, ids in enumerate(won):
        for job_id in ids:
            record = await store.get_job(job_id)
            assert record is not None and (record.state, record.host) == (JobState.PROVISIONING, f"host-{index}")
        stored = {e.job_id for _, e in await store.outbox_rows(f"host-{index}")}
        assert stored == set(ids)  # only the winner's events were stored
