"""Webhooks under faults: nothing is lost, nothing is built twice, the service keeps serving.

Each fault is injected where it happens in production: RabbitMQ behind a
TCP proxy of the test's own that refuses connections (longer than the
publisher's ``publish_timeout``), a publish that dies half-way, the fake
GitHub answering rate limits, "No commit found", or failing an update
after a create.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from common.queue import RabbitJobPublisher
from common.queue.errors import PublishFailed
from common.rpc import jobs_pb2
from integration.jobs import job_id_of
from integration.reporting.github import WORKFLOW_CHECK_NAME
from integration.settings import WebhookSettings
from tests.integration.stack import LABEL, WORKFLOW, IntegrationStack, RabbitQueue
from tests.proxy import TcpProxy
from tests.waiting import async_wait_until

pytestmark = pytest.mark.faults

GH_REPO = "Codertocat/Hello-World"
GH_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
LATER = 3600.0
TWO_JOBS = """\
workflow name="Solstice CI" {
  job id="build" runs_on="illumos-stable" {
    step name="Test" run="make test"
  }
  job id="lint" runs_on="illumos-stable" {
    step name="Lint" run="make lint"
  }
}
"""


class Broker:
    """The queue's publisher reaches RabbitMQ only through ``proxy``."""

    def __init__(self, proxy: TcpProxy, publisher: RabbitJobPublisher) -> None:
        self.proxy, self.publisher = proxy, publisher


@pytest.fixture
async def broker(queue: RabbitQueue) -> AsyncIterator[Broker]:
    parts = urlsplit(queue.url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    # publish_timeout 1 s: the outage below lasts longer than it, as one of minutes would in production
    publisher = RabbitJobPublisher(proxy.url_for(queue.url), queue.topology, publish_timeout=1.0)
    await publisher.start()
    try:
        yield Broker(proxy, publisher)
    finally:
        await publisher.close()
        await proxy.close()


async def make_stack(tmp_path: Path, fixtures_dir: Path, app_key, publisher, **webhooks) -> IntegrationStack:
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, publisher, webhooks=WebhookSettings(**webhooks))
    await stack.start()
    return stack


async def test_a_push_while_rabbitmq_is_down_is_deferred_and_built_once_it_is_back(
        tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue, broker: Broker, payload):
    stack = await make_stack(tmp_path, fixtures_dir, app_key, broker.publisher, retry_initial=0.2, retry_max=0.5)
    maintain = asyncio.create_task(stack.integration.maintain(retry_interval=0.1))
    try:
        stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
        broker.proxy.down()
        status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
        assert (status, answer["result"]) == (202, "deferred"), answer
        assert "did not confirm" in answer["detail"]
        # the background retries run into the outage for a while: they reschedule, the loop lives on
        await async_wait_until(lambda: broker.proxy.refused >= 3, timeout=30, what="retries during the outage")
        assert not maintain.done(), maintain
        assert await queue.count() == 0
        broker.proxy.restore()
        [request] = await async_wait_until(lambda: _take_nonempty(queue), timeout=30, what="the build")
        assert (request.checkout.sha, request.key) == (GH_SHA, "build")
        assert not maintain.done()
        # the outage did not change the ids the build was published under
        assert request.job_id == job_id_of(request.run_id, "build")
    finally:
        maintain.cancel()
        await asyncio.gather(maintain, return_exceptions=True)
        await stack.close()
    assert await queue.count() == 0, "built once"


async def test_the_webhook_is_answered_within_its_deadline_however_long_the_outage(
        tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue, broker: Broker, payload):
    """The publisher would keep trying for its publish_timeout (60 s); GitHub gives up after 10 s."""
    slow = RabbitJobPublisher(broker.proxy.url_for(queue.url), queue.topology)  # publish_timeout: 60 s
    await slow.start()
    stack = await make_stack(tmp_path, fixtures_dir, app_key, slow, handling_deadline=2)
    try:
        stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
        broker.proxy.down()
        status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
        assert (status, answer["result"]) == (202, "deferred"), answer
        assert "within the 2s a webhook may take" in answer["detail"]
        broker.proxy.restore()
        assert await stack.integration.service.retry_deferred(now=time.time() + LATER) == 1
        [request] = await queue.take()
        assert request.job_id == job_id_of(request.run_id, "build")
    finally:
        await stack.close()
        await slow.close()


async def _take_nonempty(queue: RabbitQueue) -> list[jobs_pb2.JobRequest]:
    return await queue.take()


class HalfPublished:
    """The real publisher confirms the first request, then the connection dies (as RabbitMQ's does:
    a ``PublishFailed`` inside the ``ExceptionGroup`` of its concurrent publishes)."""

    def __init__(self, real: RabbitJobPublisher) -> None:
        self.real = real
        self.broken = True

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest]) -> None:
        if self.broken:
            self.broken = False
            await self.real.publish(requests[:1])
            raise ExceptionGroup("unhandled errors in a TaskGroup (1 sub-exception)", [
                PublishFailed(f"RabbitMQ did not confirm message {requests[1].job_id} within 60s")])
        await self.real.publish(requests)


async def test_a_partial_publish_is_retried_under_the_same_job_ids(
        tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue, payload):
    stack = await make_stack(tmp_path, fixtures_dir, app_key, HalfPublished(queue.publisher))
    try:
        stack.github.put_file(GH_REPO, GH_SHA, TWO_JOBS)
        status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
        assert (status, answer["result"]) == (202, "deferred"), answer
        assert await stack.integration.service.retry_deferred(now=time.time() + LATER) == 1
    finally:
        await stack.close()
    requests = await queue.take()
    # build was published twice (once per try), but as the same job: the orchestrator takes it once
    assert sorted(r.key for r in requests) == ["build", "build", "lint"]
    assert len({r.job_id for r in requests}) == 2
    assert len({r.run_id for r in requests}) == 1


async def test_a_secondary_rate_limit_on_the_workflow_read_defers_until_github_allows(
        stack: IntegrationStack, queue: RabbitQueue, payload):
    service = stack.integration.service
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.github.rate_limit_next(1, retry_after=120, path_contains="/contents/")
    before = time.time()
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert (status, answer["result"]) == (202, "deferred"), answer
    assert "rate limited" in answer["detail"]
    assert await service.retry_deferred(now=before + 100) == 0, "not before GitHub said"
    stack.github.rate_limit_next(1, reset_in=3600, path_contains="/contents/")  # now the primary limit
    assert await service.retry_deferred(now=before + 130) == 0
    assert await service.retry_deferred(now=before + 130 + 1800) == 0, "rescheduled to the reset, not dropped"
    assert await service.retry_deferred(now=before + 130 + LATER + 60) == 1
    [request] = await queue.take()
    assert request.checkout.sha == GH_SHA
    contents = [c.status for c in stack.github.calls if "/contents/" in c.path]
    assert contents == [403, 403, 200]


async def test_a_retry_after_beyond_the_deadline_is_not_hammered(stack: IntegrationStack, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.github.rate_limit_next(5, status=429, retry_after=30, path_contains="/contents/")
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert (status, answer["result"]) == (202, "deferred"), answer
    # 30 s do not fit the 8 s a webhook may take: one call, then the build waits its turn
    assert [c.status for c in stack.github.calls if "/contents/" in c.path] == [429]


async def test_a_commit_github_does_not_see_yet_is_not_a_missing_workflow(
        stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.github.unseen_commits.add(GH_SHA)
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert (status, answer["result"]) == (202, "deferred"), answer
    assert "does not see the commit yet" in answer["detail"]
    stack.github.unseen_commits.clear()
    assert await stack.integration.service.retry_deferred(now=time.time() + LATER) == 1
    assert len(await queue.take()) == 1


async def test_a_retry_after_a_partial_workflow_report_makes_no_second_check(stack: IntegrationStack, payload):
    broken = "workflow {\n" + "".join(f'  job id="j{i}" runs_on="{LABEL}" {{\n    step rnu="x"\n  }}\n'
                                       for i in range(60)) + "}\n"  # 60 errors: two batches of annotations
    stack.github.put_file(GH_REPO, GH_SHA, broken)
    stack.github.fail_next(10, status=502, path_contains="/check-runs/", method="PATCH")  # the 2nd annotation batch
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert (status, answer["result"]) == (202, "deferred"), answer
    stack.github.faults.clear()
    await stack.integration.service.retry_deferred(now=time.time() + LATER)
    checks = [c for c in stack.github.check_runs.values() if c["name"] == WORKFLOW_CHECK_NAME]
    assert len(checks) == 1, checks
    assert (checks[0]["status"], checks[0]["conclusion"]) == ("completed", "failure")
    assert checks[0]["output"]["title"].startswith("Invalid workflow: "), checks[0]["output"]


async def test_a_failing_round_never_ends_the_background_loop(stack: IntegrationStack, monkeypatch, caplog):
    """Whatever one round of deferred retries raises, the loop (and with it ``serve``) lives on."""
    service = stack.integration.service
    rounds: list[str] = []

    async def flaky(now: float | None = None, limit: int = 20) -> int:
        rounds.append("round")
        if len(rounds) == 1:
            raise ExceptionGroup("unhandled errors in a TaskGroup", [PublishFailed("not confirmed")])
        if len(rounds) == 2:
            raise RuntimeError("a bug in one round")
        return 0

    monkeypatch.setattr(service, "retry_deferred", flaky)
    maintain = asyncio.create_task(stack.integration.maintain(retry_interval=0.01))
    try:
        await async_wait_until(lambda: len(rounds) >= 4, what="rounds after the failing ones")
        assert not maintain.done()
    finally:
        maintain.cancel()
        await asyncio.gather(maintain, return_exceptions=True)
    assert sum(r.getMessage() == "retrying deferred builds failed" for r in caplog.records) == 2


class ThenStoreDown:
    """Publishes for real, then the integration's store goes away (before the build is marked done)."""

    def __init__(self, real: RabbitJobPublisher, postgres: TcpProxy) -> None:
        self.real, self.postgres = real, postgres

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest]) -> None:
        await self.real.publish(requests)
        self.postgres.down()


async def test_a_store_blip_after_the_publish_answers_queued_and_republishes_the_same_ids(
        tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue, pg_database: str, postgres: TcpProxy,
        payload):
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, ThenStoreDown(queue.publisher, postgres),
                             store=postgres.dsn_for(pg_database))
    await stack.start()
    try:
        stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
        status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
        assert (status, answer["result"]) == (202, "queued"), answer  # it was: the answer says so
        postgres.restore()
        stack.publisher = queue.publisher
        stack.integration.service.publisher = queue.publisher
        # the build's row was not cleared: it is published again once its lease ends - as the same job
        assert await stack.integration.service.retry_deferred(now=time.time() + LATER) == 1
    finally:
        await stack.close()
    requests = await queue.take()
    assert [r.job_id for r in requests] == [answer["jobs"][0]] * 2
