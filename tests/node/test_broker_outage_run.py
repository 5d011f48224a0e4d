"""RabbitMQ goes away and comes back while a node runs jobs: no job is lost.

A real node (in-process, real PostgreSQL, instant driver) works through a
stream of jobs. In the middle, the broker application stops: the node keeps
running the jobs it holds (the runner protocol and the store do not need the
broker) and its event publishes wait; a publish from the submitter started
during the outage waits too. Once the broker is back, both publishers and
the node's consumer recover; every job submitted - before, during and after
the outage - finishes exactly once, and each is announced terminal exactly once.

The node and the submitter reach the broker through a TCP proxy of this
test's own: the outage cuts their connections and refuses new ones, as a
stopped broker does to its clients, without stopping the broker that other
tests on this machine use (``tests/queue/test_broker_restart.py`` restarts
the real broker application under a publisher and a consumer).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.queue import RabbitJobPublisher, Topology
from common.rpc import jobs_pb2
from orchestrator.node.node import Node
from orchestrator.store import JobState
from tests.node.harness import (
    EventLog,
    event_log,
    job,
    node_settings,
    prefix,
    running_node,
    store_of,
)
from tests.proxy import TcpProxy, proxy_to
from tests.waiting import async_wait_until

LABELS = ("lab-a", "lab-b")
RUN = "restart-run"


def batch(start: int, n: int) -> list[jobs_pb2.JobRequest]:
    return [job(f"job-{i:03d}", label=LABELS[i % 2], steps=("sleep 0.2",), run_id=RUN) for i in range(start, start + n)]


@pytest.mark.slow
async def test_a_broker_outage_during_a_run_loses_no_job(tmp_path: Path, pg_database: str,
                                                         amqp_vhost_url: str) -> None:
    pfx = prefix()
    submitted: set[str] = set()

    async with proxy_to(amqp_vhost_url, 5672) as broker:
        amqp = broker.url_for(amqp_vhost_url)
        settings = node_settings(pg_database, amqp, tmp_path, pfx, labels=LABELS, capacity=4)
        async with event_log(amqp_vhost_url, pfx) as events, running_node(settings) as node, \
                RabbitJobPublisher(amqp, Topology(pfx)) as publisher:
            await _run(broker, events, node, publisher, submitted)


async def _run(broker: TcpProxy, events: EventLog, node: Node, publisher: RabbitJobPublisher,
               submitted: set[str]) -> None:
    store = store_of(node)

    async def finished() -> int:
        return sum(j.terminal for j in await store.jobs_of_run(RUN))

    async def submit(requests: list[jobs_pb2.JobRequest]) -> None:
        await publisher.publish(requests)
        submitted.update(r.job_id for r in requests)

    await submit(batch(0, 60))
    await async_wait_until(lambda: _at_least(finished, 10), timeout=60, what="ten jobs done")
    await async_wait_until(lambda: node.scheduler is not None and len(node.scheduler.active) > 0,
                           timeout=30, what="jobs running on the node")

    during: asyncio.Task[None] | None = None
    try:
        async with broker.outage():
            retried = publisher.stats.retried
            during = asyncio.create_task(submit(batch(60, 20)), name="publish during the outage")
            await async_wait_until(lambda: publisher.stats.retried > retried, timeout=30,
                                   what="a publish failing while the broker is away")
            assert not during.done()
            # The node keeps running what it holds while the broker is away.
            before = await finished()
            await async_wait_until(lambda: _at_least(finished, before + 1), timeout=30,
                                   what="a job finishing during the outage")
        await asyncio.wait_for(during, timeout=90)
    finally:
        if during is not None and not during.done():  # only when the test already failed
            during.cancel()
            await asyncio.gather(during, return_exceptions=True)
    # After recovery: new submissions are consumed as before.
    await submit(batch(80, 20))

    async def all_done() -> bool:
        return await finished() == len(submitted)

    await async_wait_until(all_done, timeout=120, what=f"all {len(submitted)} jobs terminal")
    assert len(submitted) == 100

    jobs = {j.job_id: j for j in await store.jobs_of_run(RUN)}
    assert set(jobs) == submitted
    assert {j.state for j in jobs.values()} == {JobState.SUCCEEDED}
    # The node never lost its store heartbeat: every job ran once.
    assert {j.attempt for j in jobs.values()} == {1}

    async def every_end_announced() -> bool:
        return all(events.terminal(job_id) for job_id in submitted)

    await async_wait_until(every_end_announced, timeout=90, what="a terminal event for every job")
    for job_id in submitted:
        # A publish retried after a lost confirm may deliver the same event twice (at-least-once):
        # the same event_id. Two different terminal events would be a job ending twice.
        ends = {e.event_id: (JobState(e.state), e.attempt) for e in events.terminal(job_id)}
        assert list(ends.values()) == [(JobState.SUCCEEDED, 1)], job_id
    consumer = node.consumer
    assert consumer is not None and consumer.connected


async def _at_least(count, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await count() >= n
