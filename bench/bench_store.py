"""State store cost per job: the writes one job's life makes, on SQLite and PostgreSQL.

Run: .venv/bin/python bench/bench_store.py [--jobs 500] [--concurrency 16] [--pg postgresql://postgres@127.0.0.1/test]

For each back-end, JOBS job lifecycles run with CONCURRENCY of them in flight
at once: submit, claim, running, 3 step reports, succeeded - 7 transactions,
as the orchestrator makes them. Prints jobs/s, transactions/s, and the ratio
to the 200 jobs/s per node that issue 5 asks of the whole dispatch path (the
store is only part of it, so the ratio should be well above 1). PostgreSQL
runs in a scratch database created and dropped here. Figures only: the test
suite never runs this file and nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

import asyncpg

from common.rpc import jobs_pb2
from orchestrator.store import JobState, Store, open_store

TARGET_JOBS_PER_S = 200
TX_PER_JOB = 7


async def lifecycle(store: Store, job_id: str) -> None:
    record = await store.submit(jobs_pb2.JobRequest(job_id=job_id, run_id="bench", key="build", runs_on="bench"))
    assert await store.claim(job_id, record.attempt, "bench-host", f"vm-{job_id}")
    assert await store.transition(job_id, 1, JobState.RUNNING)
    for index in range(3):
        step = jobs_pb2.StepResult(index=index, name=f"s{index}", state=jobs_pb2.STEP_STATE_SUCCEEDED)
        await store.record_step(job_id, 1, step)
    assert await store.transition(job_id, 1, JobState.SUCCEEDED)


async def measure(url: str, jobs: int, concurrency: int) -> float:
    async with open_store(url, pool_size=concurrency) as store:
        gate = asyncio.Semaphore(concurrency)

        async def one(n: int) -> None:
            async with gate:
                await lifecycle(store, f"job-{n}")

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(jobs)))
        return time.perf_counter() - started


def report(name: str, jobs: int, seconds: float) -> None:
    rate = jobs / seconds
    print(f"{name:<11} {jobs} jobs in {seconds:6.2f}s: {rate:8.0f} jobs/s, {rate * TX_PER_JOB:8.0f} tx/s, "
          f"{rate / TARGET_JOBS_PER_S:5.1f}x the {TARGET_JOBS_PER_S} jobs/s dispatch target")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an existing database to create the scratch database from")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        report("sqlite", args.jobs, await measure(f"sqlite://{folder}/bench.db", args.jobs, args.concurrency))

    scratch = f"solstice_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.pg)
    try:
        await admin.execute(f'CREATE DATABASE "{scratch}"')
        url = args.pg.rsplit("/", 1)[0] + f"/{scratch}"
        report("postgresql", args.jobs, await measure(url, args.jobs, args.concurrency))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
