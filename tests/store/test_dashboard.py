"""The dashboard's read model on both back-ends: what the triggers keep, what the reads return,
the rebuild, and the data step that fills in jobs stored before migration 006."""

from __future__ import annotations

import time

import pytest

from common.rpc import jobs_pb2
from orchestrator.store import FailureNote, JobState, Store, migrate, store_for_url
from orchestrator.store.dashrecords import DURATION_EDGES, Histogram, bucket_of
from orchestrator.store.dashsql import bucket_sql
from tests.store.conftest import job

SHA = [f"{n:x}" * 40 for n in range(1, 10)]


def forge_job(job_id: str, *, forge: str = "github", repo: str = "acme/app", ref: str = "refs/heads/main",
              sha: str = SHA[0], pr: int = 0, name: str = "build", runs_on: str = "illumos") -> jobs_pb2.JobRequest:
    request = job(job_id, repo=repo, ref=ref, sha=sha, name=name, key=name, runs_on=runs_on)
    request.checkout.forge = forge
    request.checkout.pull_request = pr
    return request


async def finish(store: Store, job_id: str, state: JobState, *, run: bool = True) -> None:
    assert await store.claim(job_id, (await store.get_job(job_id)).attempt, "host-a", f"vm-{job_id}")
    attempt = (await store.get_job(job_id)).attempt
    if run:
        assert await store.transition(job_id, attempt, JobState.RUNNING)
    assert await store.transition(job_id, attempt, state, reason=f"{state.name.lower()} on purpose")


async def test_refs_commits_and_cells_of_a_branch(store: Store) -> None:
    # main: commits 1, 2, 3 (3 newest), each with build + lint; a feature branch; another forge's same name
    n = 0
    for sha in SHA[:3]:
        for name in ("build", "lint"):
            n += 1
            await store.submit(forge_job(f"j{n}", sha=sha, name=name))
    await store.submit(forge_job("f1", ref="refs/heads/feature", sha=SHA[5]))
    await store.submit(forge_job("other-forge", forge="forgejo", sha=SHA[6]))
    await finish(store, "j1", JobState.SUCCEEDED)
    await finish(store, "j2", JobState.FAILED)

    refs = await store.repo_refs("github", "acme/app")
    assert [r.ref for r in refs] == ["refs/heads/feature", "refs/heads/main"]  # most recently active first
    page1 = await store.ref_commits("github", "acme/app", "refs/heads/main", limit=2)
    assert [c.sha for c in page1] == [SHA[2], SHA[1]]
    page2 = await store.ref_commits("github", "acme/app", "refs/heads/main", before_seq=page1[-1].first_seq, limit=2)
    assert [c.sha for c in page2] == [SHA[0]]
    assert await store.ref_commits("github", "acme/app", "refs/heads/main", before_seq=page2[-1].first_seq) == []

    cells = await store.commit_jobs("github", "acme/app", "refs/heads/main", [SHA[0], SHA[1]])
    assert [(c.job_id, c.sha, c.name, c.state) for c in cells] == [
        ("j1", SHA[0], "build", JobState.SUCCEEDED), ("j2", SHA[0], "lint", JobState.FAILED),
        ("j3", SHA[1], "build", JobState.QUEUED), ("j4", SHA[1], "lint", JobState.QUEUED)]
    assert cells[0].forge == "github" and cells[0].running_at is not None and cells[0].run_seconds is not None
    assert cells[2].running_at is None and cells[2].queue_seconds is None
    assert await store.commit_jobs("forgejo", "acme/app", "refs/heads/main", [SHA[0]]) == []
    assert [c.job_id for c in await store.commit_jobs("forgejo", "acme/app", "refs/heads/main", [SHA[6]])] == [
        "other-forge"]


async def test_pull_request_jobs_and_their_attempts(store: Store) -> None:
    await store.submit(forge_job("p1", ref="refs/pull/7/head", sha=SHA[1], pr=7))
    await store.submit(forge_job("p2", ref="refs/pull/7/head", sha=SHA[2], pr=7))
    await store.submit(forge_job("p-other", ref="refs/pull/8/head", sha=SHA[3], pr=8))
    await finish(store, "p1", JobState.FAILED)
    await store.retry("p1")
    jobs = await store.pull_jobs("github", "acme/app", 7)
    assert [j.job_id for j in jobs] == ["p2", "p1"]  # newest first
    assert jobs[1].attempt == 2 and jobs[1].state is JobState.QUEUED
    attempts = await store.attempts_of(["p1", "p2", "nope"])
    assert [(a.attempt, a.state) for a in attempts["p1"]] == [(1, JobState.FAILED), (2, JobState.QUEUED)]
    assert [a.attempt for a in attempts["p2"]] == [1] and "nope" not in attempts
    refs = {r.ref: r.pull_request for r in await store.repo_refs("github", "acme/app")}
    assert refs == {"refs/pull/7/head": 7, "refs/pull/8/head": 8}
    assert await store.pull_jobs("github", "acme/app", 0) == []


async def test_summaries_count_finished_attempts_and_time_them(store: Store) -> None:
    for n, state in enumerate([JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED, JobState.ERRORED,
                               JobState.CANCELLED]):
        await store.submit(forge_job(f"s{n}", sha=SHA[n]))
        await finish(store, f"s{n}", state)
    await store.submit(forge_job("waiting", sha=SHA[7]))  # queued now
    await store.submit(forge_job("busy", sha=SHA[8]))
    assert await store.claim("busy", 1, "host-a", "vm-busy")  # provisioning now
    await store.submit(forge_job("elsewhere", repo="acme/lib"))  # only queued: listed, nothing finished
    await store.submit(forge_job("never-ran", repo="acme/old"))
    await store.cancel("never-ran")  # cancelled while queued: counted, no duration

    since = time.time() - 3600
    summaries = {(s.forge, s.repo): s for s in await store.repo_summaries(since)}
    app = summaries[("github", "acme/app")]
    assert (app.succeeded, app.failed, app.errored, app.cancelled) == (2, 1, 1, 1)
    assert (app.queued, app.running) == (1, 1)
    assert app.pass_rate == pytest.approx(2 / 3)
    assert app.queue_time.total == app.run_time.total == 5  # every one of them ran
    assert app.queue_time.quantile(0.5) is not None and app.queue_time.quantile(0.5) < 1.0  # the test is fast
    lib = summaries[("github", "acme/lib")]
    assert (lib.finished, lib.queued, lib.pass_rate) == (0, 1, None)
    old = summaries[("github", "acme/old")]
    assert (old.cancelled, old.queue_time.total) == (1, 0)
    # a window that starts tomorrow holds nothing finished; what is unfinished is always shown
    later = {(s.forge, s.repo): s for s in await store.repo_summaries(time.time() + 2 * 86400)}
    assert ("github", "acme/old") not in later and later[("github", "acme/app")].finished == 0


async def test_latest_failures_carry_their_note(store: Store) -> None:
    for n, state in enumerate([JobState.FAILED, JobState.SUCCEEDED, JobState.ERRORED, JobState.FAILED]):
        await store.submit(forge_job(f"x{n}", sha=SHA[n]))
        await finish(store, f"x{n}", state)
    await store.put_failure_note("x3", 1, FailureNote(1, "Test", 42, "error: it broke"))
    failures = await store.latest_failures("github", "acme/app", time.time() - 3600, limit=2)
    assert [f.job_id for f in failures] == ["x3", "x2"]
    assert failures[0].note == FailureNote(1, "Test", 42, "error: it broke") and failures[1].note is None
    assert await store.failure_note("x3", 1) == failures[0].note
    await store.put_failure_note("x3", 1, FailureNote(0, "Build", 7, "x" * 1000))  # replaced, cut to size
    note = await store.failure_note("x3", 1)
    assert note is not None and (note.line_seq, len(note.line)) == (7, 300)
    # the failure of an attempt later retried stays listed with ITS attempt
    await store.retry("x0")
    failures = await store.latest_failures("github", "acme/app", time.time() - 3600, limit=10)
    assert ("x0", 1, JobState.FAILED) in [(f.job_id, f.attempt, f.state) for f in failures]
    assert await store.latest_failures("github", "acme/app", time.time() + 60) == []


async def test_lapsed_host_requeues_count_as_errored_attempts(store: Store) -> None:
    await store.register_host("host-a", ["illumos"], 2)
    await store.submit(forge_job("lost"))
    assert await store.claim("lost", 1, "host-a", "vm-lost")
    assert await store.transition("lost", 1, JobState.RUNNING)
    changed = await store.requeue_lapsed(-1.0, 3)  # every heartbeat is older than the future
    assert [j.job_id for j in changed] == ["lost"]
    [summary] = await store.repo_summaries(time.time() - 60)
    assert (summary.errored, summary.queued) == (1, 1)
    loads = {(load.label, load.state): load.count for load in await store.label_loads()}
    assert loads == {("illumos", JobState.QUEUED): 1}


async def test_rebuild_derives_the_same_tables(store: Store) -> None:
    for n, state in enumerate([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]):
        await store.submit(forge_job(f"r{n}", sha=SHA[n], ref="refs/heads/main" if n else "refs/heads/dev"))
        await finish(store, f"r{n}", state, run=n != 2)
    since = time.time() - 3600
    before = (await store.repo_summaries(since), await store.repo_refs("github", "acme/app"),
              await store.ref_commits("github", "acme/app", "refs/heads/main"),
              await store.latest_failures("github", "acme/app", since))
    await store.rebuild_dashboard()
    after = (await store.repo_summaries(since), await store.repo_refs("github", "acme/app"),
             await store.ref_commits("github", "acme/app", "refs/heads/main"),
             await store.latest_failures("github", "acme/app", since))
    assert after == before and before[0][0].finished == 3


async def test_the_buckets_of_sql_and_python_agree(store: Store) -> None:
    samples = [0.0, 0.5, 1.0, 1.5, 59.9, 60.0, 3599.0, 18000.0, 99999.0, *DURATION_EDGES]
    for seconds in samples:
        [row] = await store.backend.run(f"SELECT {bucket_sql('$1')} AS b", float(seconds))  # type: ignore[attr-defined]
        assert int(row["b"]) == bucket_of(seconds), seconds
    assert Histogram().add(3, 4).quantile(0.5) == pytest.approx(5 + (10 - 5) * 0.5)


async def test_jobs_stored_before_the_migration_are_filled_in(store_url: str) -> None:
    """A database at schema 005 with jobs: opening it applies 006 and its data step."""
    store = store_for_url(store_url, pool_size=2)
    backend = store.backend  # type: ignore[attr-defined]
    await backend.open()
    try:
        async with backend.transaction() as tx:
            await tx.execute(migrate.CREATE_TABLE)
            for migration in migrate.load(backend.dialect)[:5]:
                await tx.script(migration.sql)
                await tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, 0)",
                                 migration.version, migration.name)
            for n, (forge, pr) in enumerate([("github", 0), ("forgejo", 3), ("", 0)]):
                request = forge_job(f"old{n}", forge=forge, pr=pr, sha=SHA[n])
                await tx.execute(
                    "INSERT INTO jobs (job_id, run_id, key, name, runs_on, repo, ref, sha, attempt, created_at,"
                    " request) VALUES ($1, 'run', 'build', 'build', 'illumos', 'acme/app', 'refs/heads/main', $2,"
                    " 1, 100, $3)", request.job_id, request.checkout.sha, request.SerializeToString())
                await tx.execute(
                    "INSERT INTO attempts (job_id, attempt, host, state, reason, vm_name, queued_at, started_at,"
                    " finished_at, updated_at) VALUES ($1, 1, 'h', $2, '', '', 100, 101, 160, 160)",
                    request.job_id, int(JobState.FAILED if n == 0 else JobState.SUCCEEDED))
    finally:
        await backend.close()
    reopened = store_for_url(store_url, pool_size=2)
    await reopened.open()
    try:
        assert [r.ref for r in await reopened.repo_refs("github", "acme/app")] == ["refs/heads/main"]
        assert [j.job_id for j in await reopened.pull_jobs("forgejo", "acme/app", 3)] == ["old1"]
        summaries = {(s.forge, s.repo): s for s in await reopened.repo_summaries(0)}
        assert (summaries[("github", "acme/app")].failed, summaries[("forgejo", "acme/app")].succeeded) == (1, 1)
        assert summaries[("", "acme/app")].succeeded == 1  # no forge in its request: kept as it was
        assert [f.job_id for f in await reopened.latest_failures("github", "acme/app", 0)] == ["old0"]
    finally:
        await reopened.close()
