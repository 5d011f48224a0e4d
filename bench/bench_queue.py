"""Queue throughput per back-end: publish, consume, and both at once (jobs/s, instant on_job).

Run: .venv/bin/python bench/bench_queue.py [--jobs N] [--slots N] [--batch N]

* publish: jobs/s until every publish is confirmed (RabbitMQ) or committed
  (SQLite), with no consumer running;
* consume: jobs/s draining the queue just filled (start of the consumer to
  the last ack);
* publish+consume: jobs/s from the first publish to the last ack with the
  consumer running throughout.

Needs RabbitMQ on 127.0.0.1:5672 for the RabbitMQ figures (a throw-away vhost
is created and deleted). Prints figures and the RabbitMQ/SQLite ratios; not
part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from common.queue import Disposition, JobPublisher, RabbitJobPublisher, Topology
from common.rpc import jobs_pb2
from orchestrator.queue import LocalQueue, RabbitJobConsumer

# The checkout's tests package (for its vhost helpers), not the stray top-level
# ``tests`` package some wheels install into site-packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import services  # noqa: E402


def requests(prefix: str, n: int) -> list[jobs_pb2.JobRequest]:
    return [
        jobs_pb2.JobRequest(schema_version=1, job_id=f"{prefix}-{i}", run_id="bench", key="k", runs_on="bench")
        for i in range(n)
    ]


class Counter:
    """An instant ``on_job`` that signals when ``n`` jobs were handled."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.done = asyncio.Event()

    async def on_job(self, request: jobs_pb2.JobRequest) -> Disposition:
        self.seen += 1
        if self.seen >= self.n:
            self.done.set()
        return Disposition.ACK

    async def on_dead_letter(self, job_id: str | None, reason: str) -> None:
        raise SystemExit(f"unexpected dead letter {job_id}: {reason}")


@dataclass(frozen=True)
class Figures:
    publish: float
    consume: float
    both: float


async def publish_all(publisher: JobPublisher, jobs: list[jobs_pb2.JobRequest], batch: int) -> None:
    for chunk in range(0, len(jobs), batch):
        await publisher.publish(jobs[chunk:chunk + batch])


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def bench_local(n: int, slots: int, batch: int) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.sqlite"
        # Publish with a node serving the label but no free slot (nothing is handed out).
        counter = Counter(n)
        async with LocalQueue(path, ["bench"], counter.on_job, counter.on_dead_letter, 0) as queue:
            publish = await timed(lambda: publish_all(queue, requests("p", n), batch))
            consume_start = time.perf_counter()
            await queue.set_free_slots(slots)
            await counter.done.wait()
            consume = time.perf_counter() - consume_start

        counter = Counter(n)
        async with LocalQueue(path, ["bench"], counter.on_job, counter.on_dead_letter, slots) as queue:

            async def run() -> None:
                await publish_all(queue, requests("b", n), batch)
                await counter.done.wait()

            both = await timed(run)
    return Figures(n / publish, n / consume, n / both)


async def bench_rabbit(n: int, slots: int, batch: int) -> Figures:
    vhost = services.create_vhost()
    url = services.amqp_url(vhost)
    topology = Topology(prefix="bench.")
    try:
        counter = Counter(n)
        consumer = RabbitJobConsumer(url, ["bench"], counter.on_job, counter.on_dead_letter, 0, topology)
        await consumer.start()  # declares the label queue; paused (0 free slots)
        try:
            async with RabbitJobPublisher(url, topology) as publisher:
                publish = await timed(lambda: publish_all(publisher, requests("p", n), batch))
            consume_start = time.perf_counter()
            await consumer.set_free_slots(slots)
            await counter.done.wait()
            consume = time.perf_counter() - consume_start
        finally:
            await consumer.stop()

        counter = Counter(n)
        consumer = RabbitJobConsumer(url, ["bench"], counter.on_job, counter.on_dead_letter, slots, topology)
        await consumer.start()
        try:
            async with RabbitJobPublisher(url, topology) as publisher:

                async def run() -> None:
                    await publish_all(publisher, requests("b", n), batch)
                    await counter.done.wait()

                both = await timed(run)
        finally:
            await consumer.stop()
    finally:
        services.delete_vhost(vhost)
    return Figures(n / publish, n / consume, n / both)


def show(name: str, figures: Figures) -> None:
    print(
        f"{name:8} publish {figures.publish:8.0f} jobs/s   consume {figures.consume:8.0f} jobs/s   "
        f"publish+consume {figures.both:8.0f} jobs/s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=64, help="free slots (prefetch) of the consumer")
    parser.add_argument("--batch", type=int, default=100, help="requests per publish call")
    args = parser.parse_args()
    print(f"{args.jobs} jobs, {args.slots} slots, batches of {args.batch}, instant on_job")
    local = await bench_local(args.jobs, args.slots, args.batch)
    show("sqlite", local)
    rabbit = await bench_rabbit(args.jobs, args.slots, args.batch)
    show("rabbitmq", rabbit)
    print(
        f"ratio rabbitmq/sqlite: publish {rabbit.publish / local.publish:.2f}  "
        f"consume {rabbit.consume / local.consume:.2f}  publish+consume {rabbit.both / local.both:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
