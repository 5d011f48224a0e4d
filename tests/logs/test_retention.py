"""Retention deletes what finished longer ago than the retention age, and only that: job records
with their attempts and steps, archived logs, and this node's log files (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.rpc import admin_pb2, jobs_pb2, runner_pb2
from orchestrator.logstore import LogStore
from orchestrator.logstore.retention import Retention
from orchestrator.logstore.sqlarchive import SqlLogArchive
from orchestrator.store import JobState, Store, open_store
from tests.logs.test_archive import chunk
from tests.node.harness import job

DAY = 86400.0
AGE = 90 * DAY


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.db"
    return request.getfixturevalue("pg_database")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url, pool_size=2) as opened:
        yield opened


async def finish(store: Store, job_id: str, attempt: int = 1, days_ago: float = 0.0) -> None:
    assert await store.claim(job_id, attempt, "node-a", f"vm-{job_id}-{attempt}")
    assert await store.transition(job_id, attempt, JobState.RUNNING)
    assert await store.record_step(job_id, attempt, jobs_pb2.StepResult(index=0, name="s",
                                                                        state=jobs_pb2.STEP_STATE_SUCCEEDED))
    assert await store.transition(job_id, attempt, JobState.SUCCEEDED)
    if days_ago:
        await store.backend.run(  # type: ignore[attr-defined]
            "UPDATE attempts SET finished_at = finished_at - $1 WHERE job_id = $2 AND attempt = $3",
            days_ago * DAY, job_id, attempt)


async def log_a_line(logs: LogStore, job_id: str, attempt: int) -> None:
    joblog = await logs.open(job_id, attempt)
    batch = runner_pb2.LogBatch(first_sequence=1)
    batch.runs.add(step=0, stream=admin_pb2.LOG_STREAM_STDOUT, at=1.0, lines=1, data=b"hello")
    await joblog.append(batch)
    await joblog.close()


def age_folder(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    for item in [path, *path.rglob("*")]:
        os.utime(item, (when, when))


async def test_retention_deletes_only_what_is_old(store: Store, tmp_path: Path) -> None:
    archive = SqlLogArchive(store.backend)  # type: ignore[attr-defined]
    async with LogStore(tmp_path / "logs") as logs:
        for job_id in ("old", "young", "retried", "running", "ancient-but-queued"):
            await store.submit(job(job_id))
        await finish(store, "old", days_ago=91)
        await finish(store, "young", days_ago=89)
        await finish(store, "retried", days_ago=120)
        await store.retry("retried")
        await finish(store, "retried", attempt=2)  # its last attempt ended now: the job stays
        assert await store.claim("running", 1, "node-a", "vm-running-1")
        for job_id, attempt in (("old", 1), ("young", 1), ("retried", 1), ("retried", 2)):
            await log_a_line(logs, job_id, attempt)
            assert await archive.append(job_id, attempt, "node-a", chunk(1, 3))
        # a folder of a job another node's pass deleted from the store, untouched for long; and a fresh one
        await log_a_line(logs, "gone-elsewhere", 1)
        age_folder(tmp_path / "logs" / "gone-elsewhere", 100)
        await log_a_line(logs, "unknown-but-recent", 1)

        retention = Retention(store, logs, archive, AGE)
        dry = await retention.collect(dry_run=True)
        assert dry.dry_run and dry.jobs == 1 and dry.job_ids == ("old",)
        assert dry.logs == 2  # old's archived log, and gone-elsewhere's file
        assert dry.log_bytes > 0
        assert await store.get_job("old") is not None and (tmp_path / "logs" / "old").exists()
        assert await archive.state("old", 1) is not None

        done = await retention.collect()
        assert not done.dry_run and done.job_ids == ("old",) and done.jobs == 1
        assert await store.get_job("old") is None and await store.attempts("old") == []
        assert await store.steps("old", 1) == []
        assert await archive.state("old", 1) is None
        assert not (tmp_path / "logs" / "old").exists()
        assert not (tmp_path / "logs" / "gone-elsewhere").exists()
        for job_id in ("young", "retried", "running", "ancient-but-queued"):
            assert await store.get_job(job_id) is not None, job_id
        assert [a.attempt for a in await store.attempts("retried")] == [1, 2]
        for job_id, attempt in (("young", 1), ("retried", 1), ("retried", 2)):
            assert await archive.state(job_id, attempt) is not None
            assert (tmp_path / "logs" / job_id / f"{attempt}.log").exists()
        assert (tmp_path / "logs" / "unknown-but-recent").exists()
        assert (await retention.collect()).jobs == 0  # nothing left to do

        # a shorter age asked for (ciadm gc --older-than) reaches the younger job too
        shorter = await retention.collect(dry_run=True, older_than=30 * DAY)
        assert shorter.job_ids == ("young",)
