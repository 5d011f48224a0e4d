"""How long the integration and the runner take to recover from outages (the figures in docs/forges.md
and docs/runner.md).

Run: .venv/bin/python bench/bench_recovery.py [--only NAME ...]

Each scenario injects its fault as the fault tests do (a TCP proxy of its
own in front of RabbitMQ or PostgreSQL, the fake GitHub answering rate
limits or dropping answers, a git server failing requests) with the
PRODUCTION settings unless the line says otherwise, and prints how long
after the fault ended the work was done. Needs RabbitMQ and PostgreSQL on
127.0.0.1 (a throw-away vhost and database are made and removed). Not part
of the test suite; it takes about three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.queue import EventConsumer, RabbitEventPublisher, RabbitJobPublisher  # noqa: E402
from common.rpc import jobs_pb2  # noqa: E402
from integration.events import BuildRequested, Forge, PendingBuild, Repo  # noqa: E402
from integration.jobs import new_id  # noqa: E402
from integration.settings import ReportSettings  # noqa: E402
from tests import services  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402
from tests.fakes.forges import rsa_key_pair  # noqa: E402
from tests.fakes.git_http import GitHttpServer  # noqa: E402
from tests.integration.events import S, job_event, new_job_id  # noqa: E402
from tests.integration.stack import WORKFLOW, IntegrationStack, RabbitQueue  # noqa: E402
from tests.protocol.harness import assigned, orchestrator  # noqa: E402
from tests.queue.proxy import TcpProxy  # noqa: E402
from tests.runner.helpers import make_repo, runner_exit, start_runner  # noqa: E402

REPO = "Codertocat/Hello-World"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
KEY = rsa_key_pair()


def push() -> dict:
    return json.loads((FIXTURES / "forge" / "github" / "push.new-branch.json").read_text())


async def until(predicate: Callable[[], Awaitable[object]], timeout: float = 600.0, step: float = 0.05) -> float:
    """Seconds until ``predicate()`` is truthy."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("the scenario did not recover")
        await asyncio.sleep(step)
    return time.monotonic() - started


async def proxied(url: str, default_port: int) -> TcpProxy:
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    await proxy.start()
    return proxy


async def broker_outage(tmp: Path, amqp: str, pg: str) -> str:
    queue = RabbitQueue(amqp)
    await queue.start()
    proxy = await proxied(amqp, 5672)
    publisher = RabbitJobPublisher(proxy.url_for(amqp), queue.topology)  # publish_timeout: the default 60 s
    await publisher.start()
    stack = IntegrationStack(tmp, FIXTURES, KEY, publisher)
    await stack.start()
    maintain = asyncio.create_task(stack.integration.maintain())
    try:
        stack.github.put_file(REPO, SHA, WORKFLOW)
        proxy.outage()
        sent = time.monotonic()
        status, answer = await stack.deliver_github("push", push())
        answered = time.monotonic() - sent
        assert answer["result"] == "deferred", answer
        await asyncio.sleep(5.0)  # the rest of the outage
        proxy.restore()
        taken: list[jobs_pb2.JobRequest] = []

        async def queued() -> bool:
            taken.extend(await queue.take())
            return bool(taken)
        back = await until(queued)
        return (f"push during a RabbitMQ outage: answered 202 deferred after {answered:.1f}s (publish_timeout 60s); "
                f"outage {answered + 5:.0f}s; queued {back:.1f}s after RabbitMQ was back "
                f"({len(taken)} request, the first retry is retry_initial = 30s after the push)")
    finally:
        maintain.cancel()
        await asyncio.gather(maintain, return_exceptions=True)
        await stack.close()
        await publisher.close()
        await proxy.close()
        await queue.close()


async def crash(tmp: Path, amqp: str, pg: str) -> str:
    """The state a process SIGKILLed after its claims leaves (the fault test kills a real one)."""
    queue = RabbitQueue(amqp)
    await queue.start()
    stack = IntegrationStack(tmp, FIXTURES, KEY, queue.publisher)
    await stack.start()
    maintain = asyncio.create_task(stack.integration.maintain())
    try:
        stack.github.put_file(REPO, SHA, WORKFLOW)
        settings = stack.settings.webhooks
        pending = PendingBuild(BuildRequested(Repo(Forge.GITHUB, REPO, "https://github.com/o/r.git", 1),
                                              "refs/heads/master", SHA, "github push"), new_id("run"))
        await stack.integration.store.start_build("github:dead", f"github:{REPO}:refs/heads/master:{SHA}",
                                                  pending.to_json(), settings.dedupe_ttl,
                                                  time.time() + settings.build_lease)
        took = await until(lambda: _count(queue))
        return (f"process killed between claim and publish: built {took:.1f}s after the claim "
                f"(build_lease {settings.build_lease:g}s, retry_interval {settings.retry_interval:g}s)")
    finally:
        maintain.cancel()
        await asyncio.gather(maintain, return_exceptions=True)
        await stack.close()
        await queue.close()


async def rate_limited_read(tmp: Path, amqp: str, pg: str) -> str:
    queue = RabbitQueue(amqp)
    await queue.start()
    stack = IntegrationStack(tmp, FIXTURES, KEY, queue.publisher)
    await stack.start()
    maintain = asyncio.create_task(stack.integration.maintain())
    try:
        stack.github.put_file(REPO, SHA, WORKFLOW)
        stack.github.rate_limit_next(1, retry_after=45, path_contains="/contents/")
        status, answer = await stack.deliver_github("push", push())
        assert answer["result"] == "deferred", answer
        allowed = time.monotonic() + 45
        await until(lambda: _count(queue))
        return (f"workflow read answered 403 secondary rate limit, retry-after 45s: deferred; queued "
                f"{time.monotonic() - allowed:+.1f}s from when GitHub allowed it (never before)")
    finally:
        maintain.cancel()
        await asyncio.gather(maintain, return_exceptions=True)
        await stack.close()
        await queue.close()


async def _count(queue: RabbitQueue) -> bool:
    return await queue.count() > 0


async def store_outage(tmp: Path, amqp: str, pg: str) -> str:
    queue = RabbitQueue(amqp)
    await queue.start()
    proxy = await proxied(pg, 5432)
    stack = IntegrationStack(tmp, FIXTURES, KEY, queue.publisher, store=proxy.dsn_for(pg), report=ReportSettings())
    await stack.start()
    reporter = stack.integration.reporter
    consumer = EventConsumer(amqp, "integration", reporter.handle, queue.topology, bindings=("job.#",))
    events = RabbitEventPublisher(amqp, queue.topology)
    await consumer.start()
    await events.start()
    try:
        job = new_job_id()
        await events.publish([job_event(job, S.JOB_STATE_RUNNING)])
        await until(lambda: _is(reporter.reported == 1))
        proxy.outage()
        await events.publish([job_event(job, S.JOB_STATE_SUCCEEDED)])
        await asyncio.sleep(4.0)
        proxy.restore()
        back = await until(lambda: _is(any(r["status"] == "completed" for r in stack.github.check_runs.values())))
        return (f"PostgreSQL (the integration's store) down 4s as a job completed: check completed {back:.1f}s "
                f"after it was back; {reporter.store_retries} store retries, "
                f"{consumer.stats.dead_lettered} dead-lettered")
    finally:
        await events.close()
        await consumer.stop(grace=5)
        await stack.close()
        await proxy.close()
        await queue.close()


async def _is(value: object) -> bool:
    return bool(value)


async def dropped_create(tmp: Path, amqp: str, pg: str) -> str:
    queue = RabbitQueue(amqp)
    await queue.start()
    stack = IntegrationStack(tmp, FIXTURES, KEY, queue.publisher, report=ReportSettings())
    await stack.start()
    try:
        clean, lost = [], []
        for times in (clean, lost):
            for _ in range(5):
                if times is lost:
                    stack.github.drop_next(1, path_contains="/check-runs", method="POST")
                started = time.monotonic()
                await stack.integration.reporter.handle(job_event(new_job_id(), S.JOB_STATE_QUEUED))
                times.append(time.monotonic() - started)
        assert len(stack.github.check_runs) == 10
        return (f"check-run create whose answer is dropped: reported in {sorted(lost)[2]:.2f}s (median of 5) "
                f"against {sorted(clean)[2]:.2f}s without the fault; one check run each")
    finally:
        await stack.close()
        await queue.close()


async def checkout_blip(tmp: Path, amqp: str, pg: str) -> str:
    repo = make_repo(tmp / "repos" / "repo", {"a": "b\n"})
    server = GitHttpServer(tmp / "repos")
    await server.start()
    took = []
    try:
        for failures in (0, 2):
            server.fail_next(failures, 503)
            async with orchestrator(tmp / f"logs-{failures}") as orch:
                session = orch.gateway.assign(assigned(
                    "job-1", [jobs_pb2.Step(run="true")], clone_url=f"{server.url}/repo/.git", sha=repo.sha))
                started = time.monotonic()
                proc = await start_runner(orch.server.address, session.token, tmp / f"vm-{failures}")
                outcome = await asyncio.wait_for(session.wait_finished(), 120)
                took.append(time.monotonic() - started)
                await runner_exit(proc)
                assert outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED, outcome.reason
    finally:
        await server.close()
    return (f"runner checkout over HTTP with 2 failed fetches (503): job done in {took[1]:.1f}s against "
            f"{took[0]:.1f}s without (the retries' pauses: 0.5-1s, then 1-2s)")


SCENARIOS = {"broker": broker_outage, "crash": crash, "rate-limit": rate_limited_read, "store": store_outage,
             "dropped-create": dropped_create, "checkout": checkout_blip}


async def run(names: list[str], amqp: str, pg: str) -> None:
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{name:15} {await SCENARIOS[name](Path(tmp), amqp, pg)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    names = parser.parse_args().only
    vhost = services.create_vhost()
    database = services.create_database()
    try:
        asyncio.run(run(names, services.amqp_url(vhost), services.pg_dsn(database)))
    finally:
        services.drop_database(database)
        services.delete_vhost(vhost)


if __name__ == "__main__":
    main()
