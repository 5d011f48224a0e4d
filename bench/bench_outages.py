"""Outages of the store and the broker under a running node: what they cost jobs, and how long
recovery takes once the service is back.

Run: .venv/bin/python bench/bench_outages.py [--store 2 4 10] [--broker 3 10] [--lost 3]
     [--publish-timeout 1]

One in-process node (instant driver, capacity 4, the test suite's short timers: heartbeat
0.2 s, stale_after 2 s, sweep 0.5 s) runs against a scratch PostgreSQL database and a scratch
RabbitMQ vhost. A TCP proxy of the benchmark's own stands between the node and the service that
goes away: it cuts every connection and refuses new ones for the outage (the shared services
keep running). The benchmark's own store, publisher and event observer connect directly.

* store outage of N s: 4 jobs (``sleep 1``) are running when it starts, 8 more are published
  during it. Measured from the moment it ends: the first new job claimed, the 4 finished jobs
  recorded, every job terminal, every terminal event received.
* broker outage of N s (> ``publish_timeout``): 8 jobs (``sleep 1``) running or queued when it
  starts, 4 more published during it. From its end: every terminal event received, every job
  terminal.
* lost host while the broker is away: a host ("ghost") holds 4 running jobs and stops
  heartbeating; the broker is away for N s, longer than stale_after + sweep. From its end:
  the ghost's jobs (requeued in the store during the outage, their requests in the node's
  outbox) finished elsewhere.

Figures only: not part of the test suite, nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.config import Seconds  # noqa: E402
from common.queue import RabbitJobPublisher, Topology  # noqa: E402
from orchestrator.names import vm_name  # noqa: E402
from orchestrator.store import JobState, Store, open_store  # noqa: E402
from tests import services  # noqa: E402
from tests.node.harness import EventLog, event_log, job, node_settings, prefix, running_node  # noqa: E402
from tests.proxy import proxy_to  # noqa: E402


async def until(predicate: Callable[[], Awaitable[bool]], since: float | None = None, timeout: float = 120.0) -> float:
    """Seconds from ``since`` (a ``time.monotonic()``; default now) until ``predicate`` holds (polled every 20 ms)."""
    start = time.monotonic() if since is None else since
    while not await predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"gave up after {timeout:g}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


class World:
    """A scratch database and vhost for one scenario, and what observes them."""

    def __init__(self, pg: str, amqp: str, root: Path) -> None:
        self.pg, self.amqp, self.root = pg, amqp, root
        self.prefix = prefix()
        self.store: Store
        self.events: EventLog
        self.publisher: RabbitJobPublisher

    async def state(self, job_id: str) -> JobState | None:
        record = await self.store.get_job(job_id)
        return None if record is None else record.state

    def all_terminal(self, job_ids: list[str]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            states = [await self.state(j) for j in job_ids]
            return all(s is not None and s.terminal for s in states)
        return check

    def all_announced(self, job_ids: list[str]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return all(self.events.terminal(j) for j in job_ids)
        return check

    def any_claimed(self, job_ids: list[str]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            states = [await self.state(j) for j in job_ids]
            return any(s not in (None, JobState.QUEUED) for s in states)
        return check


@contextlib.asynccontextmanager
async def world(root: Path) -> AsyncIterator[World]:
    database = await asyncio.to_thread(services.create_database)  # they run event loops of their own
    vhost = await asyncio.to_thread(services.create_vhost)
    made = World(services.pg_dsn(database), services.amqp_url(vhost), root)
    try:
        async with contextlib.AsyncExitStack() as stack:
            made.store = await stack.enter_async_context(open_store(made.pg, pool_size=2))
            made.events = await stack.enter_async_context(event_log(made.amqp, made.prefix))
            made.publisher = await stack.enter_async_context(RabbitJobPublisher(made.amqp, Topology(made.prefix)))
            yield made
    finally:
        await asyncio.to_thread(services.delete_vhost, vhost)
        await asyncio.to_thread(services.drop_database, database)


async def store_outage(root: Path, seconds: float) -> str:
    async with world(root) as w, proxy_to(w.pg, 5432) as pg:
        settings = node_settings(pg.dsn_for(w.pg), w.amqp, root, w.prefix)
        async with running_node(settings) as node:
            finishing = [f"fin-{i}" for i in range(4)]
            arriving = [f"new-{i}" for i in range(8)]
            await w.publisher.publish([job(j, steps=("sleep 1",)) for j in finishing])

            async def running() -> bool:
                return [await w.state(j) for j in finishing] == [JobState.RUNNING] * len(finishing)
            await until(running)
            async with pg.outage():
                await w.publisher.publish([job(j) for j in arriving])
                await asyncio.sleep(seconds)  # the outage's length
            back = time.monotonic()
            first = await until(w.any_claimed(arriving), back)
            recorded = await until(w.all_terminal(finishing), back)
            done = await until(w.all_terminal(finishing + arriving), back)
            announced = await until(w.all_announced(finishing + arriving), back)
            stats = node.consumer.stats  # type: ignore[union-attr]
            lost = [j for j in finishing + arriving if await w.state(j) is not JobState.SUCCEEDED]
            return (f"store away {seconds:4.1f}s | after it: first new job claimed {first:5.2f}s, the 4 finished "
                    f"recorded {recorded:5.2f}s, all 12 done {done:5.2f}s (events {announced:5.2f}s) | deferred "
                    f"deliveries {stats.deferred}, dead letters {stats.dead_lettered}, ends kept on disk "
                    f"{node.outcomes.kept}, not succeeded {len(lost)}")


async def broker_outage(root: Path, seconds: float, publish_timeout: float) -> str:
    async with world(root) as w, proxy_to(w.amqp, 5672) as mq:
        settings = node_settings(w.pg, mq.url_for(w.amqp), root, w.prefix, publish_timeout=Seconds(publish_timeout))
        async with running_node(settings):
            before = [f"run-{i}" for i in range(8)]
            during = [f"late-{i}" for i in range(4)]
            await w.publisher.publish([job(j, steps=("sleep 1",)) for j in before])

            async def four_running() -> bool:
                return [await w.state(j) for j in before].count(JobState.RUNNING) >= 4
            await until(four_running)
            async with mq.outage():
                await w.publisher.publish([job(j) for j in during])
                await asyncio.sleep(seconds)
            back = time.monotonic()
            done = await until(w.all_terminal(before + during), back)
            announced = await until(w.all_announced(before + during), back)
            return (f"broker away {seconds:4.1f}s (publish_timeout {publish_timeout:g}s) | after it: all 12 done "
                    f"{done:5.2f}s, every terminal event received {announced:5.2f}s; the node kept running")


async def lost_host(root: Path, seconds: float) -> str:
    async with world(root) as w, proxy_to(w.amqp, 5672) as mq:
        held = [f"ghost-{i}" for i in range(4)]
        await w.store.register_host("ghost", ["lab-a"], 4)
        for job_id in held:
            await w.store.submit(job(job_id))
            await w.store.claim(job_id, 1, "ghost", vm_name(job_id, 1))
            await w.store.transition(job_id, 1, JobState.RUNNING)
        settings = node_settings(w.pg, mq.url_for(w.amqp), root, w.prefix, publish_timeout=Seconds(1))
        async with running_node(settings):
            async with mq.outage():
                started = time.monotonic()

                async def requeued() -> bool:
                    records = [await w.store.get_job(j) for j in held]
                    return all(r is not None and r.attempt == 2 for r in records)
                found = await until(requeued)
                await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
            back = time.monotonic()
            done = await until(w.all_terminal(held), back)
            announced = await until(w.all_announced(held), back)
            return (f"host lost, broker away {seconds:4.1f}s | its jobs requeued in the store {found:5.2f}s into the "
                    f"outage; after it: all done {done:5.2f}s, events {announced:5.2f}s")


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="bench-outages-") as tmp:
        root = Path(tmp)
        for n, seconds in enumerate(args.store):
            print(await store_outage(root / f"store-{n}", seconds), flush=True)
        for n, seconds in enumerate(args.broker):
            print(await broker_outage(root / f"broker-{n}", seconds, args.publish_timeout), flush=True)
        for n, seconds in enumerate(args.lost):
            print(await lost_host(root / f"lost-{n}", seconds), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=float, nargs="*", default=[2.0, 4.0, 10.0], help="store outages, s")
    parser.add_argument("--broker", type=float, nargs="*", default=[3.0, 10.0], help="broker outages, s")
    parser.add_argument("--lost", type=float, nargs="*", default=[4.0], help="broker outages with a lost host, s")
    parser.add_argument("--publish-timeout", type=float, default=1.0)
    asyncio.run(main(parser.parse_args()))
