"""Races between hosts: several stores (each its own connections) on ONE database.

Each store stands for an orchestrator host; within a store the operations
also run concurrently (PostgreSQL: several pooled connections at once).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from orchestrator.store import IgnoreReason, JobState, RetryNotAllowed, Store
from tests.store.conftest import OpenStores, drive, job
from tests.store.test_hosts import LAPSE, lapse

HOSTS = 8
JOBS = 50


async def test_exactly_one_claimer_wins_each_job(store: Store, open_stores: OpenStores) -> None:
    for n in range(JOBS):
        await store.submit(job(f"j{n}"))
    hosts = await open_stores(HOSTS)

    async def claim_all(index: int, host: Store) -> list[str]:
        results = await asyncio.gather(*(host.claim(f"j{n}", 1, f"host-{index}", f"vm-{n}") for n in range(JOBS)))
        return [f"j{n}" for n, won in enumerate(results) if won]

    won = await asyncio.gather(*(claim_all(index, host) for index, host in enumerate(hosts)))
    winners = Counter(job_id for ids in won for job_id in ids)
    assert sorted(winners) == sorted(f"j{n}" for n in range(JOBS))
    assert set(winners.values()) == {1}
    for index, ids in enumerate(won):
        for job_id in ids:
            record = await store.get_job(job_id)
            assert record is not None and (record.state, record.host) == (JobState.PROVISIONING, f"host-{index}")


async def test_redelivered_claims_race_idempotently(store: Store, open_stores: OpenStores) -> None:
    await store.submit(job("j1"))
    same_host = await open_stores(4)
    results = await asyncio.gather(*(host.claim("j1", 1, "host-a", "vm-1") for host in same_host))
    assert results == [True] * 4  # every delivery to the same host is that host's claim
    assert not await store.claim("j1", 1, "host-b", "vm-2")
    assert len(await store.attempts("j1")) == 1


async def test_racing_terminal_reports_apply_once(store: Store, open_stores: OpenStores) -> None:
    await drive(store, "j1", JobState.RUNNING)
    hosts = await open_stores(4)
    ends = [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ERRORED]
    applied = await asyncio.gather(*(host.transition("j1", 1, end) for host, end in zip(hosts, ends, strict=True)))
    assert applied.count(True) == 1
    winner = ends[applied.index(True)]
    assert (await store.get_job("j1")).state is winner  # type: ignore[union-attr]
    assert (await store.ignored_transitions_by_reason()) == {IgnoreReason.LATE: 3}


async def test_concurrent_retries_make_one_new_attempt(store: Store, open_stores: OpenStores) -> None:
    await drive(store, "j1", JobState.FAILED)
    hosts = await open_stores(5)
    results = await asyncio.gather(*(host.retry("j1") for host in hosts), return_exceptions=True)
    retried = [result for result in results if not isinstance(result, BaseException)]
    assert len(retried) == 1 and retried[0].attempt == 2
    assert all(isinstance(result, RetryNotAllowed) for result in results if result not in retried)
    assert [a.attempt for a in await store.attempts("j1")] == [1, 2]


async def test_concurrent_submits_of_one_job_store_it_once(store: Store, open_stores: OpenStores) -> None:
    hosts = await open_stores(5)
    records = await asyncio.gather(*(host.submit(job("j1")) for host in hosts))
    assert {(r.job_id, r.attempt, r.created_at) for r in records} == {(records[0].job_id, 1, records[0].created_at)}
    assert len(await store.attempts("j1")) == 1


async def test_concurrent_sweeps_requeue_each_job_once(store: Store, open_stores: OpenStores) -> None:
    await store.register_host("dead", ["illumos"], capacity=JOBS)
    for n in range(30):
        await drive(store, f"j{n}", JobState.RUNNING if n % 2 else JobState.PROVISIONING, host="dead")
    hosts = await open_stores(5)
    for index, host in enumerate(hosts):
        await host.register_host(f"live-{index}", ["illumos"], capacity=4)
    await drive(store, "kept", JobState.RUNNING, host="live-0")
    await lapse(store, dead=["dead"], live=[f"live-{index}" for index in range(len(hosts))])

    async def sweep(host: Store) -> list[str]:
        return [record.job_id for record in await host.requeue_lapsed(LAPSE, max_attempts=3)]

    swept = await asyncio.gather(*(sweep(host) for host in hosts))
    requeued = Counter(job_id for ids in swept for job_id in ids)
    assert sorted(requeued) == sorted(f"j{n}" for n in range(30))
    assert set(requeued.values()) == {1}
    for n in range(30):
        assert [(a.attempt, a.state) for a in await store.attempts(f"j{n}")] == [
            (1, JobState.ERRORED), (2, JobState.QUEUED)]
    kept = await store.get_job("kept")
    assert kept is not None and (kept.state, kept.attempt) == (JobState.RUNNING, 1)
