"""Fixtures of the store contract tests: every test runs once per back-end.

``store_url`` names a fresh database (an SQLite file in tmp_path, or a new
PostgreSQL database from ``pg_database``); ``store`` is an open store on it and
``open_stores(n)`` opens more stores on the SAME database, as other hosts would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from common.rpc import jobs_pb2
from orchestrator.store import JobState, Store, store_for_url

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.db"
    return request.getfixturevalue("pg_database")


OpenStores = Callable[[int], Awaitable[list[Store]]]


@pytest.fixture
async def open_stores(store_url: str) -> AsyncIterator[OpenStores]:
    """Open ``n`` more stores on the test's database (small pools: the machine is shared)."""
    opened: list[Store] = []

    async def open_n(n: int) -> list[Store]:
        batch = [store_for_url(store_url, pool_size=2) for _ in range(n)]
        for store in batch:
            await store.open()
            opened.append(store)
        return batch

    try:
        yield open_n
    finally:
        for store in reversed(opened):
            await store.close()


@pytest.fixture
async def store(open_stores: OpenStores) -> Store:
    return (await open_stores(1))[0]


def job(job_id: str, **fields: object) -> jobs_pb2.JobRequest:
    """A job request; ``fields`` override JobRequest fields, ``repo``/``ref``/``sha`` the checkout."""
    checkout = jobs_pb2.Checkout(
        forge="local",
        repo=str(fields.pop("repo", "o/r")),
        ref=str(fields.pop("ref", "refs/heads/main")),
        sha=str(fields.pop("sha", "a" * 40)),
    )
    request = jobs_pb2.JobRequest(
        schema_version=jobs_pb2.SCHEMA_VERSION_1, job_id=job_id, run_id="run-1", key="build",
        runs_on="illumos", checkout=checkout, steps=[jobs_pb2.Step(name="Test", run="make test")],
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return request


async def drive(store: Store, job_id: str, state: JobState, host: str = "host-a") -> None:
    """Submit ``job_id`` and move its attempt 1 to ``state`` the way the orchestrator would."""
    await store.submit(job(job_id))
    if state is JobState.QUEUED:
        return
    assert await store.claim(job_id, 1, host, f"vm-{job_id}")
    if state is JobState.PROVISIONING:
        return
    if state is not JobState.RUNNING and state.terminal:
        assert await store.transition(job_id, 1, JobState.RUNNING)
        assert await store.transition(job_id, 1, state, reason=f"to {state.name}")
        return
    assert await store.transition(job_id, 1, state)
