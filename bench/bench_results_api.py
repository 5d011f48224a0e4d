"""Results API throughput and latency on loopback: POST /api/v1/results, verified and stored.

Run: .venv/bin/python bench/bench_results_api.py [--requests N] [--concurrency 1,8,32] [--postgres]

Each request is a downstream's report as it arrives in production: an OIDC
token (RS256, verified against the issuer's JWKS, cached after the first
fetch), the allowlist check, the per-repository token bucket in the store,
the body schema, the dispatch lookup, the state machine's conditional write.
Reports alternate in_progress (a new record) and completed (the update),
spread over 50 downstream repositories. Prints requests/s and the client's
p50/p99 per concurrency level, and the throughput ratio against the first
level. SQLite by default; --postgres uses a throw-away database on
127.0.0.1:5432. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import services  # noqa: E402
from tests.fakes.oidc import FakeOidcIssuer  # noqa: E402
from tests.integration.external.conftest import ResultsServer, completed, report_body  # noqa: E402

REPOS = [f"acme/ci-{n}" for n in range(50)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def level(server: ResultsServer, tokens: dict[str, str], requests: int, concurrency: int,
                tag: str) -> tuple[float, list[float]]:
    # One job = its in_progress then its completed report, in that order (the other order is a 409).
    jobs: asyncio.Queue[tuple[str, bytes, bytes]] = asyncio.Queue()
    for n in range(requests // 2):
        repo = REPOS[n % len(REPOS)]
        job = f"{tag}-{n}"
        jobs.put_nowait((repo, json.dumps(report_body(f"github:bench-{repo}", job_id=job)).encode(),
                         json.dumps(completed(f"github:bench-{repo}", job_id=job)).encode()))
    sent = 2 * jobs.qsize()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def post(repo: str, body: bytes) -> None:
            start = time.perf_counter()
            async with session.post(server.url + "/api/v1/results", data=body, headers={
                    "Authorization": f"Bearer {tokens[repo]}", "Content-Type": "application/json"}) as answer:
                await answer.read()
                if answer.status not in (200, 201):
                    raise SystemExit(f"unexpected answer {answer.status}: {await answer.text()}")
            latencies.append(time.perf_counter() - start)

        async def worker() -> None:
            while not jobs.empty():
                repo, started, done = jobs.get_nowait()
                await post(repo, started)
                await post(repo, done)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return sent / elapsed, latencies


async def run(args: argparse.Namespace, database: str | None) -> None:
    levels = [int(c) for c in args.concurrency.split(",")]
    allowlist = "version: 1\nupstreams:\n  github:octo-org/octo-repo:\n" + "".join(f"    {r}: L3\n" for r in REPOS)
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeOidcIssuer(audience="https://solstice.test") as issuer:
            server = ResultsServer(Path(tmp), issuer, rate_per_minute=1e9, rate_burst=1_000_000,
                                   quota_per_repository=10_000_000)
            if database:
                import dataclasses
                server.settings = dataclasses.replace(server.settings, store=services.pg_dsn(database))
            server.allowlist.write_text(allowlist)
            await server.start()
            try:
                for repo in REPOS:
                    await server.dispatch(repo, delivery=f"github:bench-{repo}")
                tokens = {repo: issuer.mint(repo, run_attempt="1", exp=int(time.time()) + 3600) for repo in REPOS}
                await level(server, tokens, 20, 1, "warm")
                store = "PostgreSQL" if database else "SQLite"
                print(f"results API on loopback, {store} store, {args.requests} reports per level "
                      f"(half in_progress, half completed), 50 repositories")
                print(f"{'concurrency':>11} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
                first = None
                for concurrency in levels:
                    rate, latencies = await level(server, tokens, args.requests, concurrency, f"c{concurrency}")
                    first = first or rate
                    print(f"{concurrency:>11} {rate:>8.0f} {percentile(latencies, 0.5) * 1000:>8.2f} "
                          f"{percentile(latencies, 0.99) * 1000:>8.2f} {rate / first:>6.2f}")
                print(f"(mean latency at the last level: {statistics.mean(latencies) * 1000:.2f} ms)")
            finally:
                await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    database = services.create_database() if args.postgres else None
    try:
        asyncio.run(run(args, database))
    finally:
        if database:
            services.drop_database(database)


if __name__ == "__main__":
    main()
