"""The single node's ``/healthz`` and raw logs against a real store and log store, over loopback HTTP
(the job page itself is the dashboard's: tests/dashboard)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.logbatch import STDOUT, SYSTEM
from common.rpc import jobs_pb2, runner_pb2
from integration.httpserver import HttpLimits, harden
from orchestrator.logstore import LogStore
from orchestrator.singlenode.web import Backing, JobPages
from orchestrator.store import JobState, open_store


def request(job_id: str, name: str) -> jobs_pb2.JobRequest:
    return jobs_pb2.JobRequest(
        schema_version=jobs_pb2.SCHEMA_VERSION_1, job_id=job_id, run_id="run-1", key="build", name=name,
        runs_on="illumos-stable", checkout=jobs_pb2.Checkout(forge="local", repo="me/app", ref="refs/heads/main",
                                                             sha="a" * 40),
        steps=[jobs_pb2.Step(name="Build", run="make")],
    )


def app_of(pages: JobPages) -> web.Application:
    """The single node's pages as ``make_app`` serves them (without the webhooks)."""
    app = web.Application()
    harden(app, HttpLimits())
    pages.add_routes(app)
    return app


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[JobPages, TestClient, object, LogStore]]:
    pages = JobPages()
    async with open_store(f"sqlite:///{tmp_path / 'state.sqlite'}") as store, LogStore(tmp_path / "logs") as logs:
        client = TestClient(TestServer(app_of(pages)))
        await client.start_server()
        try:
            yield pages, client, store, logs
        finally:
            await client.close()
            await logs.aclose()


async def test_healthz_follows_the_parts(served) -> None:
    pages, client, store, logs = served
    answer = await client.get("/healthz")
    assert (answer.status, await answer.json()) == (503, {"status": "starting"})
    assert (await client.get("/jobs/job-1/log")).status == 503  # nothing to read yet
    pages.attach(Backing(store, logs, "host-a", "local", "every runs_on label"))
    pages.ready = True
    assert (await client.get("/healthz")).status == 200
    pages.ready = False
    answer = await client.get("/healthz")
    assert (answer.status, await answer.json()) == (503, {"status": "stopping"})


async def test_the_log_is_raw_text(served) -> None:
    pages, client, store, logs = served
    pages.attach(Backing(store, logs, "host-a", "local", "every runs_on label"))
    await store.submit(request("job-1", "<script>alert(1)</script>"))

    missing = await client.get("/jobs/job-1/log")
    assert missing.status == 404 and "no log yet" in await missing.text()

    joblog = await logs.open("job-1", 1)
    batch = runner_pb2.LogBatch(first_sequence=1)
    batch.runs.add(step=0, stream=SYSTEM, at=1.0, lines=1, data=b"step 1: Build")
    batch.runs.add(step=0, stream=STDOUT, at=1.0, lines=3, data=b"caf\xc3\xa9 ok\nlong li\nne ends\xff")
    batch.continuations.extend([4])  # line 4 continues line 3 (a long line split in transit)
    await joblog.append(batch)
    answer = await client.get("/jobs/job-1/log")
    assert answer.status == 200 and answer.content_type == "text/plain"
    # the bytes the job printed, as ciadm logs prints them to a file (not UTF-8 included)
    assert await answer.read() == b"## step 1: Build\ncaf\xc3\xa9 ok\nlong line ends\xff\n"
    # a browser must never sniff a log (or the page) into something it runs
    assert answer.headers["X-Content-Type-Options"] == "nosniff"

    # "²" and "١" are digits to str.isdigit() but not to int(): 400, not 500
    for attempt in ("2", "x", "²", "%C2%B2", "١", "-1", "0", "9" * 5000, ""):
        bad = await client.get(f"/jobs/job-1/log?attempt={attempt}")
        assert bad.status == 400, attempt
        assert bad.headers["X-Content-Type-Options"] == "nosniff"
    assert (await client.get("/jobs/job-nope/log")).status == 404


async def test_an_attempt_that_ended_without_a_line_shows_an_empty_log(served) -> None:
    pages, client, store, logs = served
    pages.attach(Backing(store, logs, "host-a", "local", "every runs_on label"))
    await store.submit(request("job-2", "quiet"))
    assert await store.claim("job-2", 1, "host-a", "vm-job-2-1")
    assert (await client.get("/jobs/job-2/log")).status == 404  # provisioning: its log may still come
    assert await store.transition("job-2", 1, JobState.SUCCEEDED)
    answer = await client.get("/jobs/job-2/log")
    assert answer.status == 200 and await answer.text() == ""  # no line was logged, so none is stored
