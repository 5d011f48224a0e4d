"""Bounded load on loopback: 500 signed deliveries at once -> exactly 500 job requests in RabbitMQ."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from integration.httpserver import HttpLimits
from tests.integration.stack import WORKFLOW, IntegrationStack, RabbitQueue

COUNT = 500


@pytest.fixture
async def stack(tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue) -> AsyncIterator[IntegrationStack]:
    """All deliveries come from one address here, as through a reverse proxy: no per-client cap."""
    made = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher,
                            http=HttpLimits(max_connections_per_client=0))
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_500_concurrent_deliveries_queue_500_jobs_and_replays_queue_none(
    stack: IntegrationStack, queue: RabbitQueue, payload,
):
    repo = "Codertocat/Hello-World"
    stack.github.any_sha_files[(repo, ".solstice/workflow.kdl")] = WORKFLOW
    deliveries = []
    for i in range(COUNT):
        body = payload("github/push.new-branch")
        body["after"] = hashlib.sha1(f"commit {i}".encode()).hexdigest()
        deliveries.append((f"load-{i}", body))

    async def send_all() -> list[int]:
        answers = await asyncio.gather(*[stack.deliver_github("push", body, delivery=d) for d, body in deliveries])
        return [status for status, _ in answers]

    # aiohttp's default pool holds 100 connections: lift it so all 500 are in flight at once.
    await stack.client.close()
    stack.client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    first = await send_all()
    assert first.count(202) == COUNT, sorted(set(first))
    assert await queue.count() == COUNT
    replayed = await send_all()
    assert replayed.count(200) == COUNT  # every one a duplicate delivery
    assert await queue.count() == COUNT
    requests = await queue.take()
    assert len(requests) == COUNT
    assert len({r.job_id for r in requests}) == COUNT
    assert {r.checkout.sha for r in requests} == {body["after"] for _, body in deliveries}
    assert stack.integration.service.published == COUNT
    # one installation token for all of them (cached, refreshed under a lock)
    assert len(stack.github.calls_to("POST", "/access_tokens")) == 1
