"""Fixtures of the node tests: a multi-host cluster (real PostgreSQL + RabbitMQ) on a fresh prefix."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from common.queue import RabbitJobPublisher, Topology
from common.rpc import jobs_pb2
from orchestrator.node import Node, NodeSettings
from orchestrator.store import JobRecord, Store, open_store
from tests.node.harness import EventLog, event_log, node_settings, prefix, running_node
from tests.waiting import async_wait_until


class Cluster:
    """Nodes sharing one PostgreSQL database and one RabbitMQ prefix; a store and publisher of the test's own."""

    def __init__(self, pg: str, amqp: str, root: Path) -> None:
        self.pg = pg
        self.amqp = amqp
        self.root = root
        self.prefix = prefix()
        self.topology = Topology(self.prefix)
        self.store: Store
        self.events: EventLog
        self.publisher: RabbitJobPublisher

    def settings(self, host: str = "node-a", labels: tuple[str, ...] = ("lab-a",), capacity: int = 4,
                 **overrides: object) -> NodeSettings:
        return node_settings(self.pg, self.amqp, self.root, self.prefix, host=host, labels=labels,
                             capacity=capacity, **overrides)

    def node(self, settings: NodeSettings) -> contextlib.AbstractAsyncContextManager[Node]:
        return running_node(settings)

    async def publish(self, *requests: jobs_pb2.JobRequest) -> None:
        await self.publisher.publish(list(requests))

    async def declare(self, label: str) -> None:
        """Declare ``label``'s queue, as a node serving it would."""
        connection = await aio_pika.connect(self.amqp)
        try:
            await self.topology.declare_label_queue(await connection.channel(), label)
        finally:
            await connection.close()

    async def ready(self, label: str) -> int:
        """Messages of ``label`` waiting in the broker (not handed to any node)."""
        connection = await aio_pika.connect(self.amqp)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.topology.label_queue(label), passive=True)
            return queue.declaration_result.message_count or 0
        finally:
            await connection.close()

    async def finished(self, job_id: str, timeout: float = 30.0) -> JobRecord:
        """The job once it is terminal and its final event arrived."""
        async def done() -> JobRecord | None:
            record = await self.store.get_job(job_id)
            if record is not None and record.terminal and self.events.terminal(job_id):
                return record
            return None
        return await async_wait_until(done, timeout=timeout, what=f"job {job_id} to finish")


@pytest.fixture
async def cluster(pg_database: str, amqp_vhost_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(pg_database, amqp_vhost_url, tmp_path)
    async with contextlib.AsyncExitStack() as stack:
        c.store = await stack.enter_async_context(open_store(pg_database, pool_size=2))
        c.events = await stack.enter_async_context(event_log(amqp_vhost_url, c.prefix))
        c.publisher = await stack.enter_async_context(RabbitJobPublisher(amqp_vhost_url, c.topology))
        yield c
