"""PostgreSQL writes a submit, and a state change with its events, in one statement each (writable
CTEs). A first submit that races another one of the same job cannot see the winner's rows in its
snapshot; it must still return the stored job. The contract tests cover the rest on both back-ends."""

from __future__ import annotations

import asyncio

from common.rpc import jobs_pb2
from orchestrator.store import JobState, store_for_url
from tests.store.conftest import drive, job
from tests.waiting import async_wait_until


async def test_a_submit_blocked_by_a_concurrent_first_submit_returns_the_winners_job(pg_database: str) -> None:
    store, other = store_for_url(pg_database, pool_size=2), store_for_url(pg_database, pool_size=2)
    await store.open()
    await other.open()
    try:
        request = job("j1")
        async with other.backend.transaction() as tx:
            # The winner, still uncommitted: created_at 7 tells its row from one the loser would write.
            await tx.execute(
                "INSERT INTO jobs (job_id, run_id, key, name, runs_on, repo, ref, sha, attempt, created_at, request)"
                " VALUES ($1, 'run-1', 'build', 'build', 'illumos', 'o/r', 'refs/heads/main', 'a', 1, 7, $2)",
                "j1", request.SerializeToString(),
            )
            await tx.execute(
                "INSERT INTO attempts (job_id, attempt, host, state, reason, vm_name, queued_at, updated_at)"
                f" VALUES ($1, 1, '', {int(JobState.QUEUED)}, '', '', 7, 7)", "j1",
            )
            loser = asyncio.create_task(store.submit(request))

            async def blocked() -> bool:
                rows = await other.backend.run(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'")
                return int(rows[0]["n"]) > 0
            await async_wait_until(blocked, timeout=10, what="the second submit to wait on the first")
            assert not loser.done()
        record = await asyncio.wait_for(loser, 10)
        assert (record.job_id, record.attempt, record.state) == ("j1", 1, JobState.QUEUED)
        assert record.created_at.timestamp() == 7
        assert len(await store.attempts("j1")) == 1
    finally:
        await store.close()
        await other.close()


async def test_a_first_submit_and_a_resubmit_return_the_same_job(pg_database: str) -> None:
    store = store_for_url(pg_database, pool_size=2)
    await store.open()
    try:
        first = await store.submit(job("j2", name="Build it"))
        again = await store.submit(job("j2", name="renamed later"))  # the stored request wins
        assert first == again
        assert (first.name, first.state, first.host, first.attempt) == ("Build it", JobState.QUEUED, "", 1)
        assert first.request == job("j2", name="Build it")
    finally:
        await store.close()


async def test_a_state_change_stores_its_events_in_order_only_when_applied(pg_database: str) -> None:
    store = store_for_url(pg_database, pool_size=2)
    await store.open()
    try:
        await drive(store, "j3", JobState.PROVISIONING)
        events = [jobs_pb2.JobEvent(event_id=f"e{n}", job_id="j3", reason=f"#{n}") for n in range(7)]
        assert await store.transition_announced("j3", 1, JobState.RUNNING, "", "host-a", events)
        rows = await store.outbox_rows("host-a")
        assert [event for _, event in rows] == events  # whole events, in the order given
        assert not await store.transition_announced("j3", 1, JobState.QUEUED, "", "host-a", events[:1])
        assert len(await store.outbox_rows("host-a")) == 7 and await store.ignored_transitions() == 1
        assert await store.transition_announced("j3", 1, JobState.SUCCEEDED, "done", "host-a", [])
        record = await store.get_job("j3")
        assert record is not None and (record.state, record.reason) == (JobState.SUCCEEDED, "done")
    finally:
        await store.close()
