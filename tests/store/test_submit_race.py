"""PostgreSQL submits in one statement (a writable CTE). A first submit that races another one of
the same job cannot see the winner's rows in its snapshot; it must still return the stored job."""

from __future__ import annotations

import asyncio

from orchestrator.store import JobState, store_for_url
from tests.store.conftest import job
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
