"""A build the forge API or the queue could not take right now is kept and retried, not lost.

GitHub and Forgejo do not redeliver a failed webhook by themselves, so a
503 would lose the push. Instead the build is deferred in the store and
``WebhookService.retry_deferred`` (run by ``Integration.maintain``) builds it
once the forge and the queue answer again. Times are passed explicitly
(``now=``) instead of waiting for the real retry pauses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from common.queue.errors import QueueUnavailable
from common.rpc import jobs_pb2
from integration.settings import WebhookSettings
from integration.store import BuildStart
from tests.integration.stack import WORKFLOW, IntegrationStack, RabbitQueue
from tests.waiting import async_wait_until

GH_REPO = "Codertocat/Hello-World"
GH_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
LATER = 3600.0  # "an hour from now": past any retry pause


async def test_forge_outage_defers_the_build_and_it_is_built_once_the_forge_is_back(
    stack: IntegrationStack, queue: RabbitQueue, payload, caplog,
):
    service = stack.integration.service
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.github.fail_next(10**6, status=502, path_contains="/contents/")
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"), delivery="during-outage")
    assert (status, answer["result"]) == (202, "deferred"), answer
    assert "HTTP 502" in answer["detail"]
    assert await queue.count() == 0
    # the forge's manual redelivery, or the same head pushed again, adds nothing: the build is kept already
    assert (await stack.deliver_github("push", payload("github/push.new-branch"), delivery="during-outage"))[1][
        "result"] == "duplicate delivery"
    assert (await stack.deliver_github("push", payload("github/push.new-branch")))[1]["result"] == "duplicate build"

    assert await service.retry_deferred() == 0  # not due yet (retry_initial is 30 s)
    reads = len(stack.github.calls)
    assert await service.retry_deferred(now=time.time() + LATER) == 0  # due, the forge still fails
    assert len(stack.github.calls) > reads
    assert any(r.getMessage().startswith("deferred build still failing, next retry in 60s") for r in caplog.records)

    stack.github.faults.clear()
    assert await service.retry_deferred(now=time.time() + 2 * LATER) == 1
    [request] = await queue.take()
    assert (request.checkout.sha, request.checkout.ref, request.origin) == (GH_SHA, "refs/heads/master", "github push")
    assert await service.retry_deferred(now=time.time() + 3 * LATER) == 0  # done: not built twice
    assert await queue.count() == 0


async def test_a_build_still_failing_after_the_give_up_age_is_dropped_with_a_reason(
    stack: IntegrationStack, queue: RabbitQueue, payload, caplog,
):
    service = stack.integration.service
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.github.fail_next(10**6, status=503, path_contains="/contents/")
    assert (await stack.deliver_github("push", payload("github/push.new-branch")))[1]["result"] == "deferred"
    give_up = stack.settings.webhooks.retry_give_up
    assert await service.retry_deferred(now=time.time() + give_up + 1) == 0
    assert any(r.levelno == logging.ERROR and r.getMessage().startswith("gave up on a deferred build after 1 retries")
               for r in caplog.records)
    stack.github.faults.clear()
    assert await service.retry_deferred(now=time.time() + 2 * give_up) == 0  # dropped: nothing left
    # its build claim was released: a new delivery of the same head builds
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert (status, answer["result"]) == (202, "queued"), answer
    assert len(await queue.take()) == 1


async def test_a_refusal_during_a_retry_drops_the_build(stack: IntegrationStack, queue: RabbitQueue, payload, caplog):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.github.fail_next(3, status=502, path_contains="/contents/")  # the delivery's attempts (3 in the stack)
    assert (await stack.deliver_github("push", payload("github/push.new-branch")))[1]["result"] == "deferred"
    stack.github.fail_next(1, status=403, path_contains="/contents/")
    assert await stack.integration.service.retry_deferred(now=time.time() + LATER) == 0
    assert any("the forge refused it" in r.getMessage() and "403" in r.getMessage() for r in caplog.records)
    assert await stack.integration.service.retry_deferred(now=time.time() + 2 * LATER) == 0  # not retried again
    assert [c.status for c in stack.github.calls if "/contents/" in c.path] == [502, 502, 502, 403]
    assert await queue.count() == 0


class FlakyPublisher:
    """Passes job requests to ``inner`` unless ``down`` (then raises as a lost broker does)."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.down = True

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest]) -> None:
        if self.down:
            raise QueueUnavailable("cannot publish to RabbitMQ: connection lost (test)")
        await self.inner.publish(requests)


@pytest.fixture
async def flaky_stack(tmp_path: Path, fixtures_dir: Path, app_key,
                      queue: RabbitQueue) -> AsyncIterator[IntegrationStack]:
    made = IntegrationStack(tmp_path, fixtures_dir, app_key, FlakyPublisher(queue.publisher),
                            webhooks=WebhookSettings(retry_initial=0, retry_interval=0.05))
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_queue_outage_defers_too_and_maintain_retries_by_itself(
    flaky_stack: IntegrationStack, queue: RabbitQueue, payload,
):
    flaky_stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    status, answer = await flaky_stack.deliver_github("push", payload("github/push.new-branch"))
    assert (status, answer["result"]) == (202, "deferred"), answer
    assert "connection lost" in answer["detail"]
    maintainer = asyncio.create_task(flaky_stack.integration.maintain(), name="maintain")
    try:
        flaky_stack.publisher.down = False  # type: ignore[attr-defined]
        await async_wait_until(queue.count, what="the deferred build's job request in RabbitMQ")
    finally:
        maintainer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await maintainer
    [request] = await queue.take()
    assert request.checkout.sha == GH_SHA


async def test_deferred_builds_survive_a_restart(tmp_path, fixtures_dir, app_key, queue: RabbitQueue, payload):
    store = str(tmp_path / "kept.sqlite")
    first = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, store=store)
    await first.start()
    try:
        first.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
        first.github.fail_next(10**6, status=502, path_contains="/contents/")
        assert (await first.deliver_github("push", payload("github/push.new-branch")))[1]["result"] == "deferred"
    finally:
        await first.close()
    (tmp_path / "again").mkdir()
    second = IntegrationStack(tmp_path / "again", fixtures_dir, app_key, queue.publisher, store=store)
    await second.start()
    try:
        second.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
        assert await second.integration.service.retry_deferred(now=time.time() + LATER) == 1
    finally:
        await second.close()
    assert [r.checkout.sha for r in await queue.take()] == [GH_SHA]


async def test_when_even_the_store_fails_the_delivery_is_refused_with_503(stack: IntegrationStack, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    await stack.integration.store.close()
    try:
        status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
        assert (status, answer["result"]) == (503, "try again"), answer  # the forge shows it failed: redeliver
    finally:
        await stack.integration.store.open()


async def test_a_build_deferred_by_an_older_version_is_built_under_ids_fixed_by_its_key(
        stack: IntegrationStack, queue: RabbitQueue):
    """Older versions kept the bare build (no run id): its ids are derived from its key, so they
    too are the same on every retry."""
    from integration.events import BuildRequested, Forge, Repo
    from integration.jobs import job_id_of
    from integration.service import legacy_run_id

    build = BuildRequested(Repo(Forge.GITHUB, GH_REPO, "https://github.com/Codertocat/Hello-World.git", 1),
                           "refs/heads/master", GH_SHA, "github push")
    key = f"github:{GH_REPO}:refs/heads/master:{GH_SHA}"
    doc = json.dumps(build.to_doc(), sort_keys=True)  # the old row's shape
    started = await stack.integration.store.start_build("github:old", key, doc, 3600, time.time() - 1)
    assert started is BuildStart.STARTED
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    assert await stack.integration.service.retry_deferred() == 1
    [request] = await queue.take()
    assert request.run_id == legacy_run_id(key)
    assert request.job_id == job_id_of(legacy_run_id(key), "build")
