"""Job statuses under faults: every check run exists once and ends in its final state.

GitHub answers rate limits (403 secondary and primary, 429) or drops the
answer to a create; PostgreSQL (the integration's store, behind a TCP proxy
of the test's own) goes away right after a create, or while a ``completed``
event waits on the real RabbitMQ event bus; two replicas share the store and
the event queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.queue import Disposition, EventConsumer, RabbitEventPublisher
from integration.runtime import Integration
from integration.settings import ReportSettings
from tests.integration.events import S, job_event, new_job_id
from tests.integration.stack import IntegrationStack, RabbitQueue
from tests.proxy import TcpProxy
from tests.waiting import async_wait_until

pytestmark = pytest.mark.faults

FAST = ReportSettings(attempts=3, backoff_initial=0.01, backoff_max=0.05, request_timeout=2)


def statuses(stack: IntegrationStack) -> dict[int, tuple[str, str | None]]:
    return {run_id: (run["status"], run.get("conclusion")) for run_id, run in stack.github.check_runs.items()}


async def handle(stack: IntegrationStack, job: str, state: int) -> Disposition:
    return await stack.integration.reporter.handle(job_event(job, state))


async def test_a_secondary_rate_limit_on_the_completed_update_is_waited_out(stack: IntegrationStack):
    job = new_job_id()
    assert await handle(stack, job, S.JOB_STATE_RUNNING) == Disposition.ACK
    stack.github.rate_limit_next(1, retry_after=1, path_contains="/check-runs/", method="PATCH")
    assert await handle(stack, job, S.JOB_STATE_SUCCEEDED) == Disposition.ACK
    assert list(statuses(stack).values()) == [("completed", "success")]
    assert stack.integration.reporter.given_up == 0
    assert [c.status for c in stack.github.calls if c.method == "PATCH"] == [403, 200]


async def test_a_rate_limit_longer_than_a_call_may_wait_puts_the_event_back(
        tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue):
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher,
                             report=ReportSettings(attempts=3, backoff_initial=0.01, backoff_max=0.05,
                                                   request_timeout=2, max_wait=1))
    await stack.start()
    try:
        job = new_job_id()
        assert await handle(stack, job, S.JOB_STATE_RUNNING) == Disposition.ACK
        stack.github.rate_limit_next(1, reset_in=2, path_contains="/check-runs/", method="PATCH")
        assert await handle(stack, job, S.JOB_STATE_SUCCEEDED) == Disposition.REQUEUE  # after the limit's reset
        patches = len([c for c in stack.github.calls if c.method == "PATCH"])
        assert await handle(stack, job, S.JOB_STATE_SUCCEEDED) == Disposition.ACK  # the redelivery
        assert list(statuses(stack).values()) == [("completed", "success")]
        assert len([c for c in stack.github.calls if c.method == "PATCH"]) == patches + 1
        assert stack.integration.reporter.given_up == 0
    finally:
        await stack.close()


async def test_a_429_on_the_create_is_retried_without_a_second_check_run(stack: IntegrationStack):
    job = new_job_id()
    stack.github.rate_limit_next(1, status=429, retry_after=1, path_contains="/check-runs", method="POST")
    assert await handle(stack, job, S.JOB_STATE_QUEUED) == Disposition.ACK
    assert list(statuses(stack).values()) == [("queued", None)]


@pytest.mark.parametrize("fault", ["dropped", "too slow"])
async def test_a_create_whose_answer_is_lost_is_adopted_not_repeated(stack: IntegrationStack, fault: str):
    job = new_job_id()
    if fault == "dropped":
        stack.github.drop_next(1, path_contains="/check-runs", method="POST")
    else:
        stack.github.late_next(1, 2.5, path_contains="/check-runs", method="POST")  # request_timeout is 2 s
    assert await handle(stack, job, S.JOB_STATE_QUEUED) == Disposition.ACK
    assert await handle(stack, job, S.JOB_STATE_SUCCEEDED) == Disposition.ACK
    assert list(statuses(stack).values()) == [("completed", "success")]
    assert len([c for c in stack.github.arrived if c == ("POST", "/repos/Codertocat/Hello-World/check-runs")]) == 1


@pytest.fixture
async def pg_stack(tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue, pg_database: str,
                   postgres: TcpProxy) -> AsyncIterator[IntegrationStack]:
    """The stack with its store in PostgreSQL, behind the ``postgres`` proxy."""
    made = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, report=FAST,
                            store=postgres.dsn_for(pg_database))
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_the_store_lost_right_after_a_create_heals_by_look_up(pg_stack: IntegrationStack,
                                                                   postgres: TcpProxy):
    job = new_job_id()
    pg_stack.github.on_next("POST", "/check-runs", postgres.down)  # the create lands; saving its id cannot
    assert await handle(pg_stack, job, S.JOB_STATE_RUNNING) == Disposition.REQUEUE
    assert pg_stack.integration.reporter.store_retries == 1
    postgres.restore()
    assert await handle(pg_stack, job, S.JOB_STATE_RUNNING) == Disposition.ACK  # redelivered
    assert await handle(pg_stack, job, S.JOB_STATE_SUCCEEDED) == Disposition.ACK
    assert list(statuses(pg_stack).values()) == [("completed", "success")], "one check run, in its final state"


async def test_a_completed_event_waits_out_a_store_outage_and_is_never_dead_lettered(
        pg_stack: IntegrationStack, postgres: TcpProxy, queue: RabbitQueue):
    reporter = pg_stack.integration.reporter
    reporter.store_pause = (0.1, 0.8)  # the production pauses (0.5 s doubling to 30 s), shrunk
    consumer = EventConsumer(queue.url, "integration", reporter.handle, queue.topology, bindings=("job.#",))
    publisher = RabbitEventPublisher(queue.url, queue.topology)
    await consumer.start()
    await publisher.start()
    try:
        job = new_job_id()
        await publisher.publish([job_event(job, S.JOB_STATE_RUNNING)])
        await async_wait_until(lambda: reporter.reported == 1, what="the in_progress check run")
        postgres.down()
        await publisher.publish([job_event(job, S.JOB_STATE_SUCCEEDED)])
        # more failures than the consumer's max_attempts (5): a store outage is not the event's fault
        await async_wait_until(lambda: reporter.store_retries >= 6, timeout=60, what="retries while the store is down")
        assert consumer.stats.dead_lettered == 0 and consumer.stats.retried == 0
        postgres.restore()
        await async_wait_until(lambda: list(statuses(pg_stack).values()) == [("completed", "success")],
                               timeout=60, what="the completed check run")
        assert consumer.stats.dead_lettered == 0
    finally:
        await publisher.close()
        await consumer.stop(grace=5)


@pytest.fixture
async def replicas(pg_stack: IntegrationStack, postgres: TcpProxy, queue: RabbitQueue
                   ) -> AsyncIterator[tuple[Integration, Integration]]:
    """Two integrations sharing one PostgreSQL store (and the fake GitHub), as two replicas would."""
    other = Integration(pg_stack.settings, queue.publisher)
    await other.start()
    try:
        yield pg_stack.integration, other
    finally:
        await other.close()


async def test_two_replicas_handling_one_jobs_events_make_one_check_run(
        pg_stack: IntegrationStack, replicas: tuple[Integration, Integration]):
    one, two = replicas
    job = new_job_id()
    pg_stack.github.slow_next(1, 0.5, path_contains="/check-runs", method="POST")
    outcomes = await asyncio.gather(one.reporter.handle(job_event(job, S.JOB_STATE_QUEUED)),
                                    two.reporter.handle(job_event(job, S.JOB_STATE_RUNNING)))
    assert list(outcomes) == [Disposition.ACK, Disposition.ACK]
    assert list(statuses(pg_stack).values()) == [("in_progress", None)]


async def test_two_replicas_never_move_a_check_backwards(
        pg_stack: IntegrationStack, replicas: tuple[Integration, Integration]):
    one, two = replicas
    job = new_job_id()
    assert await one.reporter.handle(job_event(job, S.JOB_STATE_QUEUED)) == Disposition.ACK
    pg_stack.github.slow_next(1, 1.0, path_contains="/check-runs/", method="PATCH")  # one's in_progress is slow
    slow = asyncio.ensure_future(one.reporter.handle(job_event(job, S.JOB_STATE_RUNNING)))
    await async_wait_until(lambda: any(m == "PATCH" for m, _ in pg_stack.github.arrived), what="the slow update")
    assert await two.reporter.handle(job_event(job, S.JOB_STATE_SUCCEEDED)) == Disposition.ACK
    assert await slow == Disposition.ACK
    shown = [status for _, status, _ in pg_stack.github.check_run_statuses()]
    assert shown == ["queued", "in_progress", "completed"]
    assert list(statuses(pg_stack).values()) == [("completed", "success")]
    record = await one.store.get_report(job, 1)
    assert record is not None and record.rank == 4


async def test_every_check_run_exists_once_and_ends_final_through_a_storm_of_forge_faults(
        stack: IntegrationStack, queue: RabbitQueue):
    """30 jobs report queued, running and an end over the real event bus while GitHub rate-limits
    (403 secondary, 403 primary, 429), fails (502) and drops answers to creates and updates."""
    github = stack.github
    github.rate_limit_next(3, retry_after=1, path_contains="/check-runs")
    github.rate_limit_next(2, reset_in=1, path_contains="/check-runs", method="PATCH")
    github.rate_limit_next(3, status=429, retry_after=1, path_contains="/check-runs")
    github.fail_next(6, status=502, path_contains="/check-runs")
    github.drop_next(4, path_contains="/check-runs", method="POST")
    github.drop_next(4, path_contains="/check-runs/", method="PATCH")
    reporter = stack.integration.reporter
    consumer = EventConsumer(queue.url, "integration", reporter.handle, queue.topology, bindings=("job.#",))
    publisher = RabbitEventPublisher(queue.url, queue.topology)
    await consumer.start()
    await publisher.start()
    ends = {new_job_id(): end for end in (S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED)
            for _ in range(10)}
    try:
        for state in (S.JOB_STATE_QUEUED, S.JOB_STATE_RUNNING):
            await publisher.publish([job_event(job, state) for job in ends])
        await publisher.publish([job_event(job, end) for job, end in ends.items()])

        def settled() -> bool:
            final = [run for run in github.check_runs.values() if run["status"] == "completed"]
            return len(final) == len(ends)
        await async_wait_until(settled, timeout=90, what="every check run to complete")
    finally:
        await publisher.close()
        await consumer.stop(grace=5)
    assert all(f.count == 0 for f in github.faults), "every fault was met"
    by_job: dict[str, list[dict]] = {}
    for run in github.check_runs.values():
        by_job.setdefault(run["external_id"], []).append(run)
    expected = {S.JOB_STATE_SUCCEEDED: "success", S.JOB_STATE_FAILED: "failure", S.JOB_STATE_CANCELLED: "cancelled"}
    assert {job: [(r["status"], r["conclusion"]) for r in runs] for job, runs in by_job.items()} == {
        job: [("completed", expected[end])] for job, end in ends.items()}
    assert consumer.stats.dead_lettered == 0 and reporter.given_up == 0
