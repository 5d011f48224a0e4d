"""Webhook throughput and latency: signed GitHub push received -> JobRequest confirmed in RabbitMQ.

Run: .venv/bin/python bench/bench_webhooks.py [--deliveries N] [--concurrency 1,16,64]

The whole integration runs on loopback (fake GitHub App API serving the
workflow, the real aiohttp app, SQLite dedupe store, RabbitMQ publisher with
confirms). A delivery's latency is measured from sending it to its answer,
which comes only after the job request is confirmed by the broker; so it is
"webhook received -> job request published" plus one loopback HTTP exchange.
Prints p50/p99 latency and deliveries/s per concurrency level, and the
throughput ratio against one delivery at a time. Needs RabbitMQ on
127.0.0.1:5672 (a throw-away vhost is created and deleted). Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The checkout's tests package (fixtures, fakes, vhost helpers).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import services  # noqa: E402
from tests.conftest import SHARED  # noqa: E402
from tests.fakes.forges import rsa_key_pair  # noqa: E402
from tests.integration.stack import WORKFLOW, IntegrationStack, RabbitQueue  # noqa: E402

REPO = "Codertocat/Hello-World"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(deliveries: int, levels: list[int]) -> None:
    vhost = services.create_vhost()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            queue = RabbitQueue(services.amqp_url(vhost))
            await queue.start()
            stack = IntegrationStack(Path(tmp), SHARED / "fixtures", rsa_key_pair(), queue.publisher)
            await stack.start()
            try:
                stack.github.any_sha_files[(REPO, ".solstice/workflow.kdl")] = WORKFLOW
                template = json.loads((SHARED / "fixtures/forge/github/push.new-branch.json").read_text())
                await measure(stack, template, 20, 4, "warm-up")  # token, connections, JIT-free caches
                results = {}
                for level in levels:
                    results[level] = await measure(stack, template, deliveries, level, f"c{level}")
                    await queue.take()
                base = results[levels[0]][2]
                print(f"\n{'concurrency':>11} {'p50 ms':>8} {'p99 ms':>8} {'deliveries/s':>13} {'vs c' + str(levels[0]):>8}")
                for level, (p50, p99, rate) in results.items():
                    print(f"{level:>11} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f} {rate:>13.0f} {rate / base:>7.2f}x")
            finally:
                await stack.close()
                await queue.close()
    finally:
        services.delete_vhost(vhost)


async def measure(stack: IntegrationStack, template: dict, n: int, concurrency: int, tag: str) -> tuple[float, float, float]:
    bodies = []
    for i in range(n):
        body = json.loads(json.dumps(template))
        body["after"] = hashlib.sha1(f"{tag} {i} {time.time_ns()}".encode()).hexdigest()
        bodies.append(body)
    latencies: list[float] = []
    limit = asyncio.Semaphore(concurrency)

    async def one(body: dict) -> None:
        async with limit:
            start = time.perf_counter()
            status, answer = await stack.deliver_github("push", body)
            latencies.append(time.perf_counter() - start)
            if status != 202:
                raise SystemExit(f"delivery failed: {status} {answer}")

    began = time.perf_counter()
    await asyncio.gather(*[one(body) for body in bodies])
    elapsed = time.perf_counter() - began
    return statistics.median(latencies), percentile(latencies, 0.99), n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    asyncio.run(run(args.deliveries, levels))


if __name__ == "__main__":
    main()
