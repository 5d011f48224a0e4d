"""Job events -> GitHub check runs and Forgejo statuses, against the fake forges."""

from __future__ import annotations

import asyncio

from common.queue import Disposition, EventConsumer, RabbitEventPublisher
from common.rpc import jobs_pb2
from integration.runtime import Integration
from integration.store import SqliteSeenStore
from tests.integration.events import FJ_REPO, SHA, S, job_event, new_job_id, step
from tests.integration.stack import PUBLIC_URL, IntegrationStack, RabbitQueue
from tests.waiting import async_wait_until

OK, FAIL, SKIP = jobs_pb2.STEP_STATE_SUCCEEDED, jobs_pb2.STEP_STATE_FAILED, jobs_pb2.STEP_STATE_SKIPPED


async def run_states(stack: IntegrationStack, job_id: str, states, forge: str = "github", **kw) -> list[Disposition]:
    return [await stack.integration.reporter.handle(job_event(job_id, s, forge, **kw)) for s in states]


async def test_check_run_goes_queued_in_progress_completed(stack: IntegrationStack):
    job = new_job_id()
    outcomes = await run_states(stack, job, [S.JOB_STATE_QUEUED, S.JOB_STATE_PROVISIONING, S.JOB_STATE_RUNNING,
                                             S.JOB_STATE_SUCCEEDED])
    assert outcomes == [Disposition.ACK] * 4
    runs = stack.github.check_run_statuses()
    [run_id] = {r for r, _, _ in runs}
    assert [(s, c) for _, s, c in runs] == [("queued", None), ("in_progress", None), ("completed", "success")]
    check = stack.github.check_runs[run_id]
    assert check["name"] == "solstice/build"
    assert check["head_sha"] == SHA
    assert check["external_id"] == job
    assert check["details_url"] == f"{PUBLIC_URL}/jobs/{job}"
    assert check["output"]["title"] == "Succeeded"
    assert "started_at" in stack.github.check_run_updates[1][1]
    assert "completed_at" in stack.github.check_run_updates[2][1]
    # every call used the installation token
    assert all(c.headers["Authorization"].startswith("token ghs_") for c in stack.github.calls_to("PATCH"))


async def test_failure_summary_has_step_results_and_the_failing_steps_tail(stack: IntegrationStack):
    job = new_job_id()
    steps = (step(0, "Format", OK), step(1, "Test", FAIL, exit_code=2), step(2, "Deploy", SKIP))
    tail = tuple(f"test line {i}" for i in range(30)) + ("error: 3 tests failed",)
    await run_states(stack, job, [S.JOB_STATE_RUNNING])
    await run_states(stack, job, [S.JOB_STATE_FAILED], steps=steps, log_tail=tail)
    run_id, status, conclusion = stack.github.check_run_statuses()[-1]
    assert (status, conclusion) == ("completed", "failure")
    output = stack.github.check_runs[run_id]["output"]
    assert output["title"] == "Failed: step 'Test' exited with 2"
    summary = output["summary"]
    for name, state in (("Format", "succeeded"), ("Test", "failed"), ("Deploy", "skipped")):
        assert f"| {name} | {state} |" in summary
    assert "Last lines of step 'Test'" in summary
    assert "error: 3 tests failed" in summary and "test line 0" in summary
    assert f"({PUBLIC_URL}/jobs/{job})" in summary


async def test_huge_log_tail_is_cut_to_the_summary_limit(stack: IntegrationStack):
    job = new_job_id()
    tail = tuple(f"{i:05d} " + "x" * 994 for i in range(200)) + ("the very last line",)  # ~200 KB
    outcome = await stack.integration.reporter.handle(
        job_event(job, S.JOB_STATE_FAILED, steps=(step(0, "Test", FAIL, 1),), log_tail=tail)
    )
    assert outcome == Disposition.ACK
    [(run_id, body)] = stack.github.check_run_updates  # the fake validated maxLength 65535
    summary = body["output"]["summary"]
    assert len(summary) <= 65535
    assert "the very last line" in summary
    assert "00000 x" not in summary  # the oldest lines went first
    assert summary.rstrip().endswith("```")


async def test_log_tail_cannot_break_out_of_its_code_block(stack: IntegrationStack):
    job = new_job_id()
    await stack.integration.reporter.handle(
        job_event(job, S.JOB_STATE_FAILED, log_tail=("```", "# injected heading", "````"))
    )
    summary = stack.github.check_run_updates[0][1]["output"]["summary"]
    assert "`````\n```\n# injected heading\n````\n`````" in summary


async def test_cancelled_and_errored_conclusions(stack: IntegrationStack):
    cancelled, errored = new_job_id(), new_job_id()
    await run_states(stack, cancelled, [S.JOB_STATE_CANCELLED])
    await run_states(stack, errored, [S.JOB_STATE_ERRORED], reason="the VM did not boot")
    by_job = {stack.github.check_runs[r]["external_id"]: stack.github.check_runs[r] for r in stack.github.check_runs}
    assert by_job[cancelled]["conclusion"] == "cancelled"
    assert by_job[errored]["conclusion"] == "failure"
    assert by_job[errored]["output"]["title"].startswith("Errored (Solstice failed, not your code)")
    assert "the VM did not boot" in by_job[errored]["output"]["summary"]


async def test_late_and_duplicate_events_change_nothing(stack: IntegrationStack):
    job = new_job_id()
    await run_states(stack, job, [S.JOB_STATE_QUEUED, S.JOB_STATE_SUCCEEDED])
    before = list(stack.github.check_run_updates)
    outcomes = await run_states(stack, job, [S.JOB_STATE_RUNNING, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_QUEUED])
    assert outcomes == [Disposition.ACK] * 3
    assert stack.github.check_run_updates == before
    assert stack.integration.reporter.skipped == 3


async def test_a_new_attempt_gets_its_own_check_run(stack: IntegrationStack):
    job = new_job_id()
    await run_states(stack, job, [S.JOB_STATE_FAILED], attempt=1)
    await run_states(stack, job, [S.JOB_STATE_QUEUED, S.JOB_STATE_SUCCEEDED], attempt=2)
    assert len(stack.github.check_runs) == 2
    assert sorted(c["conclusion"] for c in stack.github.check_runs.values()) == ["failure", "success"]


async def test_concurrent_events_of_one_job_are_reported_in_order(stack: IntegrationStack):
    job = new_job_id()
    # A slow create: the in_progress event arrives while it is still running.
    stack.github.slow_next(1, 0.3, path_contains="/check-runs", method="POST")
    await asyncio.gather(
        stack.integration.reporter.handle(job_event(job, S.JOB_STATE_QUEUED)),
        stack.integration.reporter.handle(job_event(job, S.JOB_STATE_RUNNING)),
    )
    assert [s for _, s, _ in stack.github.check_run_statuses()] == ["queued", "in_progress"]
    assert len(stack.github.check_runs) == 1
    assert len([c for c in stack.github.calls if c.method == "POST" and "/check-runs" in c.path]) == 1


async def test_step_and_local_events_need_no_call(stack: IntegrationStack):
    job = new_job_id()
    step_event = job_event(job, S.JOB_STATE_RUNNING)
    step_event.step.CopyFrom(step(0, "Test", jobs_pb2.STEP_STATE_RUNNING))
    local = job_event(job, S.JOB_STATE_SUCCEEDED)
    local.checkout.forge = "local"
    assert await stack.integration.reporter.handle(step_event) == Disposition.ACK
    assert await stack.integration.reporter.handle(local) == Disposition.ACK
    assert stack.github.calls == []


async def test_events_of_jobs_the_integration_did_not_create_need_no_call(stack: IntegrationStack):
    # An operator's job (AdminService.Submit) names a forge checkout: still never reported.
    for source in (jobs_pb2.JOB_SOURCE_ADMIN, jobs_pb2.JOB_SOURCE_UNSPECIFIED):
        for forge in ("github", "forgejo"):
            job = new_job_id()
            for state in (S.JOB_STATE_QUEUED, S.JOB_STATE_RUNNING, S.JOB_STATE_SUCCEEDED):
                event = job_event(job, state, forge, source=source)
                assert await stack.integration.reporter.handle(event) == Disposition.ACK
    assert stack.github.calls == [] and stack.forgejo.calls == []
    assert stack.integration.reporter.skipped == 12 and stack.integration.reporter.reported == 0


async def test_forgejo_commit_statuses(stack: IntegrationStack):
    job = new_job_id()
    await run_states(stack, job, [S.JOB_STATE_QUEUED, S.JOB_STATE_RUNNING, S.JOB_STATE_SUCCEEDED], forge="forgejo")
    failed, errored = new_job_id(), new_job_id()
    await run_states(stack, failed, [S.JOB_STATE_FAILED], forge="forgejo", key="lint",
                     steps=(step(0, "Lint", FAIL, 1),))
    await run_states(stack, errored, [S.JOB_STATE_ERRORED], forge="forgejo", key="docs")
    assert stack.forgejo.statuses_of("solstice/build") == ["pending", "pending", "success"]
    assert stack.forgejo.statuses_of("solstice/lint") == ["failure"]
    assert stack.forgejo.statuses_of("solstice/docs") == ["error"]
    repo, sha, body = stack.forgejo.statuses[2]
    assert (repo, sha) == (FJ_REPO, SHA)
    assert body["target_url"] == f"{PUBLIC_URL}/jobs/{job}"
    assert body["description"] == "Succeeded"
    lint = [b for _, _, b in stack.forgejo.statuses if b["context"] == "solstice/lint"][0]
    assert lint["description"] == "Failed: step 'Lint' exited with 1"


async def test_5xx_is_retried_then_reported(stack: IntegrationStack):
    stack.github.fail_next(2, status=502, path_contains="/check-runs")
    job = new_job_id()
    assert await stack.integration.reporter.handle(job_event(job, S.JOB_STATE_QUEUED)) == Disposition.ACK
    calls = [(c.method, c.status) for c in stack.github.calls if c.path.endswith("/check-runs")]
    # the look-up before the create is retried like any read; the create follows it once it answered
    assert calls == [("GET", 502), ("GET", 502), ("GET", 200), ("POST", 201)]
    assert len(stack.github.check_runs) == 1


async def test_a_create_answered_5xx_is_looked_up_before_it_is_sent_again(stack: IntegrationStack):
    stack.github.fail_next(2, status=502, path_contains="/check-runs", method="POST")
    job = new_job_id()
    assert await stack.integration.reporter.handle(job_event(job, S.JOB_STATE_QUEUED)) == Disposition.ACK
    calls = [(c.method, c.status) for c in stack.github.calls if c.path.endswith("/check-runs")]
    assert calls == [("GET", 200), ("POST", 502), ("GET", 200), ("POST", 502), ("GET", 200), ("POST", 201)]
    assert len(stack.github.check_runs) == 1


async def test_timeouts_are_retried(stack: IntegrationStack):
    stack.forgejo.hang_next(1, 2.5, path_contains="/statuses/")  # request_timeout is 2 s in the stack
    job = new_job_id()
    assert await stack.integration.reporter.handle(job_event(job, S.JOB_STATE_QUEUED, "forgejo")) == Disposition.ACK
    assert stack.forgejo.statuses_of("solstice/build") == ["pending"]


async def test_outage_requeues_and_statuses_catch_up(stack: IntegrationStack):
    job = new_job_id()
    stack.github.fail_next(1000, status=503)
    queued, done = job_event(job, S.JOB_STATE_QUEUED), job_event(job, S.JOB_STATE_SUCCEEDED)
    assert await stack.integration.reporter.handle(queued) == Disposition.REQUEUE
    assert await stack.integration.reporter.handle(done) == Disposition.REQUEUE
    assert stack.github.check_runs == {}
    stack.github.faults.clear()  # GitHub is back; the queue redelivers both
    assert await stack.integration.reporter.handle(done) == Disposition.ACK
    assert await stack.integration.reporter.handle(queued) == Disposition.ACK  # late now: not shown
    [(run_id, status, conclusion)] = stack.github.check_run_statuses()
    assert (status, conclusion) == ("completed", "success")


async def test_4xx_is_not_retried_and_given_up_with_a_reason(stack: IntegrationStack, caplog):
    stack.github.fail_next(1, status=403, path_contains="/check-runs")
    job = new_job_id()
    assert await stack.integration.reporter.handle(job_event(job, S.JOB_STATE_QUEUED)) == Disposition.ACK
    assert [c.status for c in stack.github.calls if "/check-runs" in c.path] == [403]
    assert stack.integration.reporter.given_up == 1
    assert any("refused" in r.getMessage() and "403" in r.getMessage() for r in caplog.records)


async def test_events_older_than_the_give_up_age_are_dropped_with_a_reason(stack: IntegrationStack, caplog):
    stack.forgejo.fail_next(1000, status=500)
    old = job_event(new_job_id(), S.JOB_STATE_SUCCEEDED, "forgejo", age=3 * 24 * 3600)
    assert await stack.integration.reporter.handle(old) == Disposition.ACK
    assert stack.integration.reporter.given_up == 1
    assert any("giving up" in r.getMessage() for r in caplog.records)


async def test_check_run_ids_survive_a_restart(stack: IntegrationStack, queue: RabbitQueue):
    job = new_job_id()
    await run_states(stack, job, [S.JOB_STATE_RUNNING])
    await stack.integration.close()
    again = Integration(stack.settings, queue.publisher, store=SqliteSeenStore(stack.settings.store))
    await again.start()
    try:
        await again.reporter.handle(job_event(job, S.JOB_STATE_SUCCEEDED))
    finally:
        await again.close()
        await stack.integration.start()  # the fixture closes it again
    assert len(stack.github.check_runs) == 1  # updated, not created twice
    assert [s for _, s, _ in stack.github.check_run_statuses()] == ["in_progress", "completed"]


async def test_events_from_rabbitmq_are_acked_only_once_reported(stack: IntegrationStack, queue: RabbitQueue):
    """Real event bus: while GitHub fails, events stay queued; they are reported when it returns."""
    reporter = stack.integration.reporter
    consumer = EventConsumer(queue.url, "integration", reporter.handle, queue.topology, bindings=("job.#",))
    publisher = RabbitEventPublisher(queue.url, queue.topology)
    await consumer.start()
    await publisher.start()
    try:
        stack.github.fail_next(1000, status=502)
        job = new_job_id()
        await publisher.publish([job_event(job, S.JOB_STATE_QUEUED)])
        await async_wait_until(lambda: len(stack.github.calls) >= 6, what="retries against the failing forge")
        assert stack.github.check_runs == {}
        stack.github.faults.clear()
        await publisher.publish([job_event(job, S.JOB_STATE_RUNNING), job_event(job, S.JOB_STATE_SUCCEEDED)])
        await async_wait_until(
            lambda: ("completed", "success") in [(s, c) for _, s, c in stack.github.check_run_statuses()],
            what="the completed check run",
        )
        assert len(stack.github.check_runs) == 1
    finally:
        await publisher.close()
        await consumer.stop(grace=5)


async def test_rate_limit_429_is_retried(stack: IntegrationStack):
    stack.forgejo.rate_limit_next(1, status=429, retry_after=1, path_contains="/statuses/")
    job = new_job_id()
    assert await stack.integration.reporter.handle(job_event(job, S.JOB_STATE_RUNNING, "forgejo")) == Disposition.ACK
    assert [c.status for c in stack.forgejo.calls] == [429, 201]
