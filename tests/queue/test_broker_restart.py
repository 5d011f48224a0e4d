"""The real broker goes away under a running publisher and consumer: no job is lost.

``rabbitmqctl stop_app``/``start_app`` restarts the RabbitMQ application (all
connections die, durable queues and persistent messages survive);
``close_all_connections`` drops only this run's vhost's connections. In both
cases jobs are being published and consumed, some handlers are mid-claim when
the connection dies, and a publish is started while the broker is away.

Redelivery is allowed only where the protocol makes it necessary: a message
whose ack was lost (the broker flags it ``redelivered``; the worker puts it
back with its attempt counter raised) or a publish retried after a lost
confirm. Every extra handler call must be accounted for by one of
those two counters, and the queues must end empty.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from common.queue import Disposition, RabbitJobPublisher
from common.rpc import jobs_pb2
from tests.queue.broker import broker_stopped, close_vhost_connections, with_reconnect_interval
from tests.queue.conftest import RabbitHarness, Recorder, job
from tests.waiting import async_wait_until

LABELS = ("a", "b")
HELD = 4  # handlers still running when the connection dies
SLOTS = 8


class Run:
    """A consumer node and a publisher on ``url``, and the jobs published so far."""

    def __init__(self, rabbit: RabbitHarness) -> None:
        self.rabbit = rabbit
        self.url = with_reconnect_interval(rabbit.url, 0.5)
        self.released = asyncio.Event()
        self.held: list[str] = []
        self.recorder = Recorder(self._behaviour)
        self.published: set[str] = set()
        self.publisher: RabbitJobPublisher | None = None
        self._next = 0

    async def _behaviour(self, request: jobs_pb2.JobRequest) -> Disposition:
        # The first HELD deliveries are mid-claim when the broker goes: their
        # ack can only go to a dead channel, so the broker must redeliver them.
        if len(self.held) < HELD and not self.released.is_set():
            self.held.append(request.job_id)
            await self.released.wait()
        return Disposition.ACK

    async def start(self) -> None:
        await self.rabbit.node(LABELS, self.recorder, free_slots=SLOTS, url=self.url)
        self.publisher = await self.rabbit.publisher(self.url)

    def batch(self, n: int) -> list[jobs_pb2.JobRequest]:
        requests = [job(f"job-{self._next + i}", LABELS[(self._next + i) % 2]) for i in range(n)]
        self._next += n
        return requests

    async def publish(self, requests: list[jobs_pb2.JobRequest]) -> None:
        assert self.publisher is not None
        await self.publisher.publish(requests)
        self.published.update(r.job_id for r in requests)

    async def publish_until(self, stop: asyncio.Event) -> None:
        """Keep publishing batches of 10 until ``stop`` is set."""
        while not stop.is_set():
            await self.publish(self.batch(10))


async def outage_during_run(
    run: Run, outage: Callable[[], AbstractAsyncContextManager[None]], broker_away: bool
) -> None:
    """Publish and consume, cut the broker with ``outage`` in the middle, then check the books.

    ``broker_away``: the broker refuses connections inside the block, so a
    publish started there must fail, retry, and complete after the block.
    """
    await run.start()
    assert run.publisher is not None
    await run.publish(run.batch(60))
    await async_wait_until(lambda: len(run.held) == HELD, timeout=60, what="handlers held mid-claim")

    stop = asyncio.Event()
    background = asyncio.create_task(run.publish_until(stop), name="background publisher")
    during: asyncio.Task[None] | None = None
    try:
        await async_wait_until(lambda: len(run.published) >= 120, timeout=60, what="publishing under way")
        async with outage():
            # A publish begun while the broker is away must complete once it is back.
            retried_before = run.publisher.stats.retried
            during = asyncio.create_task(run.publish(run.batch(20)), name="publish during the outage")
            if broker_away:
                await async_wait_until(
                    lambda: run.publisher is not None and run.publisher.stats.retried > retried_before,
                    timeout=30, what="a publish attempt failing during the outage",
                )
                assert not during.done()
        run.released.set()
        await during
        published_after = len(run.published)
        await async_wait_until(
            lambda: len(run.published) >= published_after + 60, timeout=60, what="publishing after recovery"
        )
    finally:
        stop.set()
        run.released.set()
        if during is not None and not during.done():  # only when the test already failed
            during.cancel()
            await asyncio.wait([during])
        await background

    recorder = run.recorder
    await async_wait_until(
        lambda: set(recorder.acked) >= run.published, timeout=90, what=f"all {len(run.published)} jobs handled"
    )
    node = run.rabbit.nodes[0]
    await async_wait_until(lambda: node.in_flight == 0, timeout=30, what="every delivery settled")
    for label in LABELS:
        assert await run.rabbit.ready(label) == 0

    assert set(recorder.acked) == run.published
    assert recorder.dead == []
    stats = node.stats
    handled = collections.Counter(recorder.job_ids)
    extra = sum(count - 1 for count in handled.values())
    # Every handler call was counted, and each job beyond its first call is explained by a
    # broker redelivery (lost ack) or by a publish retried after a lost confirm.
    assert stats.handled == len(recorder.jobs)
    assert extra <= stats.redelivered + run.publisher.stats.retried
    # The held claims' acks went to the dead channel, so those jobs were redelivered and handled again.
    assert stats.unsettled >= HELD
    assert all(handled[job_id] >= 2 for job_id in run.held), {j: handled[j] for j in run.held}
    assert stats.redelivered >= HELD


async def test_rabbitmq_restart_during_a_run_loses_no_job(rabbit: RabbitHarness) -> None:
    run = Run(rabbit)
    await outage_during_run(run, lambda: broker_stopped(rabbit.url), broker_away=True)


async def test_connections_closed_by_the_broker_lose_no_job(rabbit: RabbitHarness) -> None:
    run = Run(rabbit)

    @asynccontextmanager
    async def closed() -> AsyncIterator[None]:
        await close_vhost_connections(rabbit.url, "test: closing every connection of the vhost")
        yield

    await outage_during_run(run, closed, broker_away=False)
