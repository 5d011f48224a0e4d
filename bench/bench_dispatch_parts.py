"""Where a dispatched job's CPU goes: each part of the node's per-job work, measured alone.

Run: .venv/bin/python bench/bench_dispatch_parts.py [--n 400] [--concurrency 16]

bench_dispatch.py reports the node's CPU per job through the whole path;
this splits it. Each part runs ``--n`` times with ``--concurrency`` of them in
flight, in this process; the CPU is this process's user+system time (so a
loaded machine changes the wall figure, much less the CPU one):

* job log: ``LogStore.open`` + ``close`` of one attempt's log (fsyncs included),
  and ``LogStore.exists``, what an attempt that logged nothing costs (it
  stores no log);
* events: the 5 confirmed JobEvent publishes of one job (provisioning, running,
  two step events, terminal) on a scratch RabbitMQ vhost;
* runner RPCs: 4 unary RunnerService calls over real gRPC on loopback,
  client and server both here (the instant driver's fake runner does the
  same inside the node);
* store: one job's writes as the node makes them on a scratch PostgreSQL
  database (submit and claim together, running, 2 step reports, terminal:
  5 calls, 5 round trips);
* runner token: issuing one and verifying it 4 times.

Prints ms of CPU per job for each part and their sum, to set against the
node CPU per job that bench_dispatch.py prints. Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# The checkout's tests package (for its service helpers), not the stray
# top-level ``tests`` package kdl-py installs into site-packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from common.grpc_options import client_options, server_options
from common.queue import RabbitEventPublisher, Topology
from common.rpc import jobs_pb2, runner_pb2, runner_pb2_grpc
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.store import JobState, open_store
from tests import services

EVENTS_PER_JOB = 5
RPCS_PER_JOB = 4


def cpu() -> float:
    times = os.times()
    return times.user + times.system


async def measure(name: str, one: Callable[[int], Awaitable[None]], n: int, concurrency: int) -> float:
    """ms of CPU per call of ``one``; prints it with the wall time."""
    await one(-1)  # warm: connections, caches
    gate = asyncio.Semaphore(concurrency)

    async def limited(i: int) -> None:
        async with gate:
            await one(i)

    c0, t0 = cpu(), time.perf_counter()
    await asyncio.gather(*(limited(i) for i in range(n)))
    per_cpu = (cpu() - c0) / n * 1000
    per_wall = (time.perf_counter() - t0) / n * 1000
    print(f"{name:<34} {per_cpu:6.2f} ms CPU per job   ({per_wall:6.2f} ms wall per job at {concurrency} in flight)")
    return per_cpu


class _Runner(runner_pb2_grpc.RunnerServiceServicer):
    async def Heartbeat(self, request, context):  # type: ignore[no-untyped-def]
        return runner_pb2.HeartbeatReply()


async def rpcs(n: int, concurrency: int) -> float:
    server = grpc.aio.server(options=server_options())
    runner_pb2_grpc.add_RunnerServiceServicer_to_server(_Runner(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async def one(i: int) -> None:
            # One channel per job, as each runner has its own.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=client_options()) as channel:
                stub = runner_pb2_grpc.RunnerServiceStub(channel)
                for _ in range(RPCS_PER_JOB):
                    await stub.Heartbeat(runner_pb2.HeartbeatRequest())

        return await measure(f"runner RPCs ({RPCS_PER_JOB} unary, both sides)", one, n, concurrency)
    finally:
        await server.stop(0)


async def job_log(n: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-parts-") as folder:
        async with LogStore(Path(folder)) as store:
            async def one(i: int) -> None:
                log = await store.open(f"job-{i + 1}", 1)
                await log.close()

            await measure("job log (open + close)", one, n, concurrency)

            async def empty(i: int) -> None:
                await store.exists(f"empty-{i + 1}", 1)  # all an attempt that logged nothing costs

            return await measure("job log that logged nothing (stores none)", empty, n, concurrency)


async def events(amqp: str, n: int, concurrency: int) -> float:
    async with RabbitEventPublisher(amqp, Topology("parts."), subscribers=[("bench", ("#",))]) as publisher:
        async def one(i: int) -> None:
            batch = [jobs_pb2.JobEvent(schema_version=1, event_id=f"e{i}-{k}", job_id=f"job-{i + 1}", run_id="r",
                                       key="k", state=int(JobState.RUNNING)) for k in range(EVENTS_PER_JOB)]
            for event in batch:  # one publish per state change, as the node announces them
                await publisher.publish([event])

        return await measure(f"events ({EVENTS_PER_JOB} confirmed publishes)", one, n, concurrency)


async def store_writes(pg: str, n: int, concurrency: int) -> float:
    async with open_store(pg, pool_size=concurrency) as store:
        async def one(i: int) -> None:
            job_id = f"job-{i + 1}"
            request = jobs_pb2.JobRequest(job_id=job_id, run_id="bench", key="k", runs_on="bench")
            await store.submit_claimed(request, "bench-host", f"solstice-{i + 1:08x}-1")
            await store.transition(job_id, 1, JobState.RUNNING)
            running = jobs_pb2.StepResult(index=0, name="s", state=jobs_pb2.STEP_STATE_RUNNING)
            done = jobs_pb2.StepResult(index=0, name="s", state=jobs_pb2.STEP_STATE_SUCCEEDED)
            for step in (running, done):
                await store.record_step(job_id, 1, step)
            await store.transition(job_id, 1, JobState.SUCCEEDED)

        return await measure("store (5 calls, 5 round trips, PG)", one, n, concurrency)


async def tokens(n: int, concurrency: int) -> float:
    issuer = TokenIssuer(os.urandom(32), 3600)

    async def one(i: int) -> None:
        token = issuer.issue(f"job-{i + 1}", 1)
        for _ in range(RPCS_PER_JOB):
            issuer.verify(token)

    return await measure("runner token (issue + 4 verifies)", one, n, concurrency)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    n, c = args.n, args.concurrency

    parts = [await job_log(n, c), await rpcs(n, c), await tokens(n, c)]
    vhost = await asyncio.to_thread(services.create_vhost)
    database = await asyncio.to_thread(services.create_database)
    try:
        parts.append(await events(services.amqp_url(vhost), n, c))
        parts.append(await store_writes(services.pg_dsn(database), n, c))
    finally:
        await asyncio.to_thread(services.delete_vhost, vhost)
        await asyncio.to_thread(services.drop_database, database)
    print(f"{'sum of the parts':<34} {sum(parts):6.2f} ms CPU per job "
          f"(compare bench_dispatch.py's node CPU per job; 5 ms/job = 200 jobs/s on one core)")


if __name__ == "__main__":
    asyncio.run(main())
