"""Webhook throughput and latency: signed GitHub push received -> JobRequest confirmed in RabbitMQ.

Run: .venv/bin/python bench/bench_webhooks.py [--deliveries N] [--concurrency 1,16,64]

The whole integration runs on loopback (fake GitHub App API serving the
workflow, the real aiohttp app, SQLite dedupe store, RabbitMQ publisher with
confirms). "received -> published" is timed inside the server, by a
middleware: from the request reaching the webhook handler (headers read,
body not yet) to the answer, which is only given once the broker confirmed
the job request; it includes the signature check, dedupe claims, the
workflow read from the fake GitHub and the publish. "round trip" is the
client's view (one more loopback HTTP exchange). Prints p50/p99 of both and
deliveries/s per concurrency level, and the throughput ratio against the
first level. Needs RabbitMQ on 127.0.0.1:5672 (a throw-away vhost is
created and deleted). Not part of the test suite.
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
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

# The checkout's tests package (fixtures, fakes, vhost helpers).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from integration.httpserver import HttpLimits  # noqa: E402
from tests import services  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402
from tests.fakes.forges import rsa_key_pair  # noqa: E402
from tests.integration.stack import WORKFLOW, IntegrationStack, RabbitQueue  # noqa: E402

REPO = "Codertocat/Hello-World"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ServerTimer:
    """aiohttp middleware: webhook handler entered -> answer ready, for answers 202 (job request published)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response = await handler(request)
        if response.status == 202:
            self.samples.append(time.perf_counter() - start)
        return response


@dataclass
class Result:
    server_p50: float
    server_p99: float
    trip_p50: float
    trip_p99: float
    rate: float


async def run(deliveries: int, levels: list[int]) -> None:
    vhost = services.create_vhost()
    timer = ServerTimer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            queue = RabbitQueue(services.amqp_url(vhost))
            await queue.start()
            # one client address for every concurrent delivery: no per-client connection cap
            stack = IntegrationStack(Path(tmp), FIXTURES, rsa_key_pair(), queue.publisher,
                                     middlewares=(timer.middleware,), http=HttpLimits(max_connections_per_client=0))
            await stack.start()
            try:
                stack.github.any_sha_files[(REPO, ".solstice/workflow.kdl")] = WORKFLOW
                template = json.loads((FIXTURES / "forge/github/push.new-branch.json").read_text())
                await measure(stack, timer, template, 20, 4, "warm-up")  # token, connections, caches
                await queue.take()
                results = {}
                for level in levels:
                    results[level] = await measure(stack, timer, template, deliveries, level, f"c{level}")
                    taken = await queue.take()
                    if len(taken) != deliveries:
                        raise SystemExit(f"expected {deliveries} job requests in RabbitMQ, found {len(taken)}")
                base = results[levels[0]].rate
                print(f"\n{deliveries} signed GitHub push deliveries per level; times in ms")
                print(f"{'concurrency':>11} {'recv->published p50':>20} {'p99':>7} {'round trip p50':>15} {'p99':>7}"
                      f" {'deliveries/s':>13} {'vs c' + str(levels[0]):>8}")
                for level, r in results.items():
                    print(f"{level:>11} {r.server_p50 * 1000:>20.1f} {r.server_p99 * 1000:>7.1f}"
                          f" {r.trip_p50 * 1000:>15.1f} {r.trip_p99 * 1000:>7.1f}"
                          f" {r.rate:>13.0f} {r.rate / base:>7.2f}x")
            finally:
                await stack.close()
                await queue.close()
    finally:
        services.delete_vhost(vhost)


async def measure(stack: IntegrationStack, timer: ServerTimer, template: dict, n: int, concurrency: int,
                  tag: str) -> Result:
    timer.samples.clear()
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
    server = list(timer.samples)
    return Result(statistics.median(server), percentile(server, 0.99),
                  statistics.median(latencies), percentile(latencies, 0.99), n / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    asyncio.run(run(args.deliveries, levels))


if __name__ == "__main__":
    main()
