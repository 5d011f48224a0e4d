"""Jobs, attempts, steps: the basic operations of the Store contract (both back-ends)."""

from __future__ import annotations

import pytest

from common.rpc import jobs_pb2
from orchestrator.store import (
    AttemptNotFound,
    JobFilter,
    JobNotFound,
    JobState,
    RetryNotAllowed,
    StepState,
    Store,
)
from tests.store.conftest import drive, job


async def test_submit_records_a_queued_first_attempt(store: Store) -> None:
    request = job("j1", repo="acme/app", ref="refs/pull/7/head", sha="b" * 40, name="Build it", run_id="r9")
    record = await store.submit(request)
    assert (record.job_id, record.run_id, record.key, record.name, record.runs_on) == (
        "j1", "r9", "build", "Build it", "illumos")
    assert (record.repo, record.ref, record.sha) == ("acme/app", "refs/pull/7/head", "b" * 40)
    assert (record.state, record.attempt, record.host, record.reason) == (JobState.QUEUED, 1, "", "")
    assert record.request == request
    assert record.created_at.tzinfo is not None and record.updated_at >= record.created_at
    assert await store.get_job("j1") == record
    [attempt] = await store.attempts("j1")
    assert (attempt.attempt, attempt.state, attempt.host, attempt.started_at, attempt.finished_at) == (
        1, JobState.QUEUED, "", None, None)


async def test_submit_is_idempotent_on_job_id(store: Store) -> None:
    first = await store.submit(job("j1"))
    assert await store.claim("j1", 1, "host-a", "vm-1")
    again = await store.submit(job("j1", key="other"))
    assert again.key == "build" and again.state is JobState.PROVISIONING and again.created_at == first.created_at
    assert len(await store.attempts("j1")) == 1
    assert len(await store.list_jobs()) == 1


async def test_submit_without_job_id_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="job_id"):
        await store.submit(job(""))


async def test_get_job_of_unknown_id_is_none(store: Store) -> None:
    assert await store.get_job("nope") is None
    assert await store.attempts("nope") == []


async def test_name_defaults_to_key(store: Store) -> None:
    assert (await store.submit(job("j1", key="lint", name=""))).name == "lint"


async def test_list_jobs_filters_newest_first(store: Store) -> None:
    await store.submit(job("a1", repo="acme/a", ref="refs/heads/main", run_id="r1"))
    await store.submit(job("a2", repo="acme/a", ref="refs/heads/dev", run_id="r1"))
    await store.submit(job("b1", repo="acme/b", ref="refs/heads/main", run_id="r2", runs_on="linux"))
    assert await store.claim("a2", 1, "host-x", "vm-a2")
    assert await store.transition("a2", 1, JobState.RUNNING)

    def ids(records: list) -> list[str]:
        return [record.job_id for record in records]

    assert ids(await store.list_jobs()) == ["b1", "a2", "a1"]
    assert ids(await store.list_jobs(JobFilter(repo="acme/a"))) == ["a2", "a1"]
    assert ids(await store.list_jobs(JobFilter(ref="refs/heads/main"))) == ["b1", "a1"]
    assert ids(await store.list_jobs(JobFilter(repo="acme/a", ref="refs/heads/main"))) == ["a1"]
    assert ids(await store.list_jobs(JobFilter(state=JobState.RUNNING))) == ["a2"]
    assert ids(await store.list_jobs(JobFilter(state=JobState.QUEUED))) == ["b1", "a1"]
    assert ids(await store.list_jobs(JobFilter(host="host-x"))) == ["a2"]
    assert ids(await store.list_jobs(JobFilter(run_id="r2"))) == ["b1"]
    assert ids(await store.list_jobs(JobFilter(runs_on="linux"))) == ["b1"]
    assert ids(await store.list_jobs(JobFilter(limit=2))) == ["b1", "a2"]
    assert await store.list_jobs(JobFilter(repo="acme/none")) == []
    with pytest.raises(ValueError):
        JobFilter(limit=0)


async def test_jobs_of_run_in_submission_order(store: Store) -> None:
    for job_id, run_id in [("x", "r1"), ("y", "r2"), ("z", "r1")]:
        await store.submit(job(job_id, run_id=run_id))
    assert [record.job_id for record in await store.jobs_of_run("r1")] == ["x", "z"]
    assert await store.jobs_of_run("r-none") == []


async def test_claim_moves_to_provisioning_for_one_host(store: Store) -> None:
    await store.submit(job("j1"))
    assert await store.claim("j1", 1, "host-a", "vm-1")
    assert not await store.claim("j1", 1, "host-b", "vm-2")
    record = await store.get_job("j1")
    assert record is not None and (record.state, record.host) == (JobState.PROVISIONING, "host-a")
    [attempt] = await store.attempts("j1")
    assert (attempt.host, attempt.vm_name, attempt.state) == ("host-a", "vm-1", JobState.PROVISIONING)
    assert attempt.started_at is not None


async def test_reclaim_by_the_holder_is_idempotent_and_updates_the_vm(store: Store) -> None:
    await store.submit(job("j1"))
    assert await store.claim("j1", 1, "host-a", "vm-1")
    assert await store.claim("j1", 1, "host-a", "vm-1")
    assert await store.transition("j1", 1, JobState.RUNNING)
    assert await store.claim("j1", 1, "host-a", "vm-1b")  # redelivered after a node restart
    assert (await store.attempts("j1"))[0].vm_name == "vm-1b"
    assert (await store.get_job("j1")).state is JobState.RUNNING  # type: ignore[union-attr]
    assert await store.transition("j1", 1, JobState.SUCCEEDED)
    assert not await store.claim("j1", 1, "host-a", "vm-1")  # finished: nothing to run again


async def test_claim_of_unknown_job_or_wrong_attempt_fails(store: Store) -> None:
    assert not await store.claim("nope", 1, "host-a", "vm")
    await store.submit(job("j1"))
    assert not await store.claim("j1", 2, "host-a", "vm")
    assert (await store.get_job("j1")).state is JobState.QUEUED  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        await store.claim("j1", 1, "", "vm")


async def test_transitions_stamp_the_attempt(store: Store) -> None:
    await drive(store, "j1", JobState.RUNNING)
    assert await store.transition("j1", 1, JobState.FAILED, reason="step Test exited 2")
    record = await store.get_job("j1")
    assert record is not None and (record.state, record.reason) == (JobState.FAILED, "step Test exited 2")
    [attempt] = await store.attempts("j1")
    assert (attempt.state, attempt.reason) == (JobState.FAILED, "step Test exited 2")
    assert attempt.finished_at is not None and attempt.started_at is not None
    assert attempt.finished_at >= attempt.started_at


async def test_retry_starts_a_new_attempt_only_from_terminal(store: Store) -> None:
    await drive(store, "j1", JobState.RUNNING)
    with pytest.raises(RetryNotAllowed, match="running"):
        await store.retry("j1")
    with pytest.raises(JobNotFound):
        await store.retry("nope")
    assert await store.transition("j1", 1, JobState.FAILED, reason="exit 1")
    retried = await store.retry("j1")
    assert (retried.state, retried.attempt, retried.host, retried.reason) == (JobState.QUEUED, 2, "", "")
    first, second = await store.attempts("j1")
    assert (first.attempt, first.state, first.host) == (1, JobState.FAILED, "host-a")
    assert (second.attempt, second.state, second.host) == (2, JobState.QUEUED, "")
    # The old attempt is stale now; the new one runs normally.
    assert not await store.transition("j1", 1, JobState.RUNNING)
    assert not await store.claim("j1", 1, "host-a", "vm")
    assert await store.claim("j1", 2, "host-b", "vm-2")
    with pytest.raises(RetryNotAllowed):
        await store.retry("j1")


async def test_cancel_ends_the_current_attempt(store: Store) -> None:
    await drive(store, "j1", JobState.PROVISIONING)
    cancelled = await store.cancel("j1", reason="cancelled by alice")
    assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled by alice")
    assert (await store.attempts("j1"))[0].state is JobState.CANCELLED
    await drive(store, "j2", JobState.SUCCEEDED)
    assert (await store.cancel("j2")).state is JobState.SUCCEEDED  # finished jobs stay as they are
    with pytest.raises(JobNotFound):
        await store.cancel("nope")


async def test_steps_are_recorded_per_attempt(store: Store) -> None:
    await drive(store, "j1", JobState.RUNNING)
    running = jobs_pb2.StepResult(index=0, name="Build", state=jobs_pb2.STEP_STATE_RUNNING)
    assert await store.record_step("j1", 1, running)
    done = jobs_pb2.StepResult(index=0, name="Build", state=jobs_pb2.STEP_STATE_SUCCEEDED, duration_seconds=1.5)
    assert await store.record_step("j1", 1, done)
    failed = jobs_pb2.StepResult(index=1, name="Test", state=jobs_pb2.STEP_STATE_FAILED, exit_code=3,
                                 duration_seconds=0.25)
    assert await store.record_step("j1", 1, failed)
    # A late "running" for a finished step does not undo it.
    assert not await store.record_step("j1", 1, running)
    steps = await store.steps("j1", 1)
    assert [(s.index, s.name, s.state, s.exit_code, s.duration) for s in steps] == [
        (0, "Build", StepState.SUCCEEDED, 0, 1.5), (1, "Test", StepState.FAILED, 3, 0.25)]
    assert steps[1].to_proto() == failed
    assert await store.steps("j1", 2) == []
    with pytest.raises(AttemptNotFound):
        await store.record_step("j1", 2, done)
    with pytest.raises(AttemptNotFound):
        await store.record_step("nope", 1, done)


async def test_live_vm_names_are_the_hosts_unfinished_attempts(store: Store) -> None:
    await drive(store, "p", JobState.PROVISIONING, host="host-a")
    await drive(store, "r", JobState.RUNNING, host="host-a")
    await drive(store, "done", JobState.SUCCEEDED, host="host-a")
    await drive(store, "other", JobState.RUNNING, host="host-b")
    await drive(store, "q", JobState.QUEUED)
    assert await store.live_vm_names("host-a") == {"vm-p", "vm-r"}
    assert await store.live_vm_names("host-b") == {"vm-other"}
    assert await store.live_vm_names("host-c") == set()
