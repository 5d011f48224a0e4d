"""Fixtures of the queue tests: job factories, recording callbacks, one harness per back-end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aio_pika.abc
import aiosqlite
import pytest

from common.queue import Disposition, RabbitJobPublisher, Topology
from common.rpc import jobs_pb2
from orchestrator.queue import LocalQueue, RabbitJobConsumer
from tests.proxy import TcpProxy
from tests.queue.broker import amqp_channel, messages_ready

Behaviour = Callable[[jobs_pb2.JobRequest], Awaitable[Disposition]]


def job(job_id: str, label: str = "a", **fields: object) -> jobs_pb2.JobRequest:
    """A minimal valid job request."""
    request = jobs_pb2.JobRequest(
        schema_version=jobs_pb2.SCHEMA_VERSION_1,
        job_id=job_id,
        run_id="run-1",
        key="build",
        runs_on=label,
        checkout=jobs_pb2.Checkout(forge="local", repo="o/r", sha="0" * 40),
        steps=[jobs_pb2.Step(name="Test", run="true")],
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return request


class Recorder:
    """``on_job``/``on_dead_letter`` pair recording every call; ``behaviour`` decides each outcome."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour
        self.jobs: list[jobs_pb2.JobRequest] = []
        self.acked: list[str] = []
        self.dead: list[tuple[str | None, str]] = []
        self.active = 0
        self.max_active = 0

    @property
    def job_ids(self) -> list[str]:
        return [request.job_id for request in self.jobs]

    async def on_job(self, request: jobs_pb2.JobRequest) -> Disposition:
        self.jobs.append(request)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            outcome = await self.behaviour(request) if self.behaviour else Disposition.ACK
        finally:
            self.active -= 1
        if outcome == Disposition.ACK:
            self.acked.append(request.job_id)
        return outcome

    async def on_dead_letter(self, job_id: str | None, reason: str) -> None:
        self.dead.append((job_id, reason))


class RabbitHarness:
    """Nodes and a publisher on a fresh name prefix in the test run's vhost."""

    kind = "rabbit"

    def __init__(self, url: str) -> None:
        self.url = url
        self.topology = Topology(prefix=f"t{uuid.uuid4().hex[:10]}.")
        self.nodes: list[RabbitJobConsumer] = []
        self.publishers: list[RabbitJobPublisher] = []
        self.proxies: list[TcpProxy] = []

    async def proxy(self) -> TcpProxy:
        parts = urlsplit(self.url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    async def node(
        self, labels: Sequence[str], recorder: Recorder, free_slots: int = 4, max_attempts: int = 3,
        url: str | None = None,
    ) -> RabbitJobConsumer:
        node = RabbitJobConsumer(
            url or self.url, labels, recorder.on_job, recorder.on_dead_letter, free_slots,
            topology=self.topology, max_attempts=max_attempts,
        )
        await node.start()
        self.nodes.append(node)
        return node

    async def publisher(self, url: str | None = None) -> RabbitJobPublisher:
        publisher = RabbitJobPublisher(url or self.url, self.topology)
        await publisher.start()
        self.publishers.append(publisher)
        return publisher

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = 0) -> None:
        publisher = self.publishers[0] if self.publishers else await self.publisher()
        await publisher.publish(requests, priority)

    async def ready(self, label: str) -> int:
        """Messages waiting (not handed out) in the label's queue."""
        return await messages_ready(self.url, self.topology.label_queue(label))

    async def dead_queue(self) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Every message retained in the dead-letter queue (left there, unacked until close)."""
        messages = []
        async with amqp_channel(self.url) as channel:
            queue = await channel.declare_queue(self.topology.jobs_dead_queue, passive=True)
            while (message := await queue.get(fail=False)) is not None:
                messages.append(message)
        return messages

    async def close(self) -> None:
        for node in reversed(self.nodes):
            await node.stop(grace=5)
        for publisher in reversed(self.publishers):
            await publisher.close()
        for proxy in self.proxies:
            await proxy.close()


class LocalHarness:
    """One ``LocalQueue`` at a time on a file of the test's tmp dir."""

    kind = "local"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes: list[LocalQueue] = []

    async def node(
        self, labels: Sequence[str], recorder: Recorder, free_slots: int = 4, max_attempts: int = 3,
    ) -> LocalQueue:
        node = LocalQueue(self.path, labels, recorder.on_job, recorder.on_dead_letter, free_slots, max_attempts)
        await node.start()
        self.nodes.append(node)
        return node

    async def publish(self, requests: Sequence[jobs_pb2.JobRequest], priority: int = 0) -> None:
        await self.nodes[-1].publish(requests, priority)

    async def ready(self, label: str) -> int:
        """Rows of ``label`` waiting to be handed out."""
        async with aiosqlite.connect(self.path) as db:
            cursor = await db.execute("SELECT count(*) FROM queue_jobs WHERE label = ? AND in_flight = 0", (label,))
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

    async def close(self) -> None:
        for node in reversed(self.nodes):
            await node.stop(grace=5)


@pytest.fixture
async def rabbit(amqp_vhost_url: str) -> AsyncIterator[RabbitHarness]:
    harness = RabbitHarness(amqp_vhost_url)
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(params=["rabbit", "local"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RabbitHarness | LocalHarness]:
    made: RabbitHarness | LocalHarness
    if request.param == "rabbit":
        made = RabbitHarness(request.getfixturevalue("amqp_vhost_url"))
    else:
        made = LocalHarness(tmp_path / "queue.sqlite")
    try:
        yield made
    finally:
        await made.close()


class Gate:
    """Holds callbacks until released, one or all."""

    def __init__(self) -> None:
        self._released = asyncio.Semaphore(0)
        self.open_all = False

    async def wait(self) -> None:
        if not self.open_all:
            await self._released.acquire()

    async def held(self, request: jobs_pb2.JobRequest) -> Disposition:
        """An ``on_job`` behaviour: wait at the gate, then ack."""
        await self.wait()
        return Disposition.ACK

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._released.release()

