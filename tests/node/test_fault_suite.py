"""The fault suite of the orchestrator core: three ``solstice-orchestrator serve`` processes run
jobs while their store and their broker go away, and one of them is lost.

Each node reaches PostgreSQL and RabbitMQ through TCP proxies of the test's own, which cut every
connection and refuse new ones for an outage; the shared services keep running for everyone
else. The test's own store, publisher and event log connect directly. Three outages, one after
the other, while jobs arrive and run:

1. PostgreSQL unreachable for 4 s (as long as ``stale_after``) while jobs arrive and others
   finish: deliveries wait it out without using up their attempts, the ends of the finishing
   jobs wait on the nodes' disks, and no node takes the others' jobs away afterwards.
2. RabbitMQ unreachable for 3 s, three times ``publish_timeout`` (1 s), while the nodes run
   jobs: the publishes that fail wait in the outbox; no node exits.
3. A node SIGKILLed while RabbitMQ is down: a live node's sweep requeues its jobs in the store
   and their requests wait in its outbox until the broker is back.

Then: every job ended exactly once, in the state its step says, with exactly one terminal event
(by ``event_id``); only the killed node's attempts were taken back; the live nodes still serve
(heartbeating, taking new jobs) and shut down cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from common.queue import RabbitJobPublisher, Topology
from orchestrator.store import JobRecord, JobState, Store, open_store
from tests.node.harness import EventLog, event_log, job, prefix
from tests.node.test_multihost import EXE, NodeProcess, held_by, node_yaml, taken_back
from tests.proxy import proxy_to
from tests.waiting import async_wait_until

HOSTS = ("fs-1", "fs-2", "fs-3")
VICTIM = "fs-2"
RUN = "faults"
STORE_OUTAGE = 4.0
BROKER_OUTAGE = 3.0
PUBLISH_TIMEOUT = 1.0


class Run:
    """The jobs of the run, published in batches, and what the test knows about them."""

    def __init__(self, store: Store, publisher: RabbitJobPublisher, events: EventLog) -> None:
        self.store = store
        self.publisher = publisher
        self.events = events
        self.expected: dict[str, JobState] = {}

    async def publish(self, n: int, step: str = "sleep 0.5") -> list[str]:
        first = len(self.expected)
        batch = []
        for i in range(first, first + n):
            failing = i % 10 == 3
            request = job(f"f-{i:03d}", steps=("exit 3",) if failing else (step,), run_id=RUN)
            self.expected[request.job_id] = JobState.FAILED if failing else JobState.SUCCEEDED
            batch.append(request)
        await self.publisher.publish(batch)
        return [r.job_id for r in batch]

    async def jobs(self) -> dict[str, JobRecord]:
        return {j.job_id: j for j in await self.store.jobs_of_run(RUN)}

    async def done(self, job_ids: list[str] | None = None) -> bool:
        jobs = await self.jobs()
        wanted = job_ids if job_ids is not None else list(self.expected)
        return all(j in jobs and jobs[j].terminal and self.events.terminal(j) for j in wanted)

    async def all_done(self, what: str, timeout: float = 60.0) -> None:
        """Wait until every job is done; on timeout, say which are not and how they stand."""
        try:
            await async_wait_until(self.done, timeout=timeout, what=what)
        except AssertionError:
            jobs = await self.jobs()
            left = {j: (jobs[j].state.name, jobs[j].attempt, jobs[j].host, len(self.events.terminal(j)))
                    if j in jobs else "not stored" for j in self.expected
                    if j not in jobs or not jobs[j].terminal or not self.events.terminal(j)}
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}: "
                                 f"(state, attempt, host, terminal events) {left}") from None

    async def running(self, at_least: int) -> bool:
        return sum(j.state is JobState.RUNNING for j in (await self.jobs()).values()) >= at_least


@pytest.mark.slow
async def test_jobs_end_once_through_store_and_broker_outages_and_a_lost_host(
        tmp_path: Path, pg_database: str, amqp_vhost_url: str) -> None:
    assert EXE.exists(), f"{EXE} is missing: run scripts/bootstrap.sh test"
    pfx = prefix()
    async with contextlib.AsyncExitStack() as stack:
        pg = await stack.enter_async_context(proxy_to(pg_database, 5432))
        mq = await stack.enter_async_context(proxy_to(amqp_vhost_url, 5672))
        store = await stack.enter_async_context(open_store(pg_database, pool_size=2))
        events = await stack.enter_async_context(event_log(amqp_vhost_url, pfx))
        publisher = await stack.enter_async_context(RabbitJobPublisher(amqp_vhost_url, Topology(pfx)))
        nodes = {}
        for host in HOSTS:
            config = tmp_path / f"{host}.yaml"
            # The multi-host test's node, with a short publish_timeout (stale_after 4s, heartbeat 0.5s).
            yaml = node_yaml(pg.dsn_for(pg_database), mq.url_for(amqp_vhost_url), pfx, tmp_path, host)
            config.write_text(f"{yaml}publish_timeout: {PUBLISH_TIMEOUT:g}s\n")
            nodes[host] = NodeProcess(config, tmp_path, host)
            stack.callback(nodes[host].ensure_dead)
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            await async_wait_until(node.serving, timeout=60, what=f"{node.host} serving")
        run = Run(store, publisher, events)

        # 1. The store away for 4 s while jobs arrive and others finish.
        await run.publish(12)
        await async_wait_until(lambda: run.running(6), timeout=60, what="jobs running before the store outage")
        async with pg.outage():
            started = time.monotonic()
            await run.publish(12)  # delivered during the outage
            await asyncio.sleep(STORE_OUTAGE - (time.monotonic() - started))  # the fault's length, not a race
        back = time.monotonic()
        await run.all_done("every job after the store outage")
        recovery = {"store away 4s": time.monotonic() - back}

        # 2. The broker away for three times publish_timeout while the nodes run jobs.
        await run.publish(12, step="sleep 1")
        await async_wait_until(lambda: run.running(6), timeout=60, what="jobs running before the broker outage")
        async with mq.outage():
            started = time.monotonic()
            await run.publish(6)  # waits in the queue for the nodes to reconnect
            await asyncio.sleep(BROKER_OUTAGE - (time.monotonic() - started))  # the fault's length
        back = time.monotonic()
        await run.all_done("every job after the broker outage")
        recovery["broker away 3s"] = time.monotonic() - back

        # 3. A node lost while the broker is away.
        await run.publish(12, step="sleep 3")

        async def victim_running() -> list[JobRecord]:
            held = [j for j in await held_by(store, VICTIM) if j.state is JobState.RUNNING]
            return held if len(held) >= 2 else []
        await async_wait_until(victim_running, timeout=60, what=f"{VICTIM} running")
        async with mq.outage():
            nodes[VICTIM].kill()
            # What the dead node still holds stays held until a live node's sweep takes it.
            held = {j.job_id for j in await held_by(store, VICTIM)}
            assert held, f"{VICTIM} held nothing when killed"

            async def requeued_in_store() -> bool:
                jobs = await run.jobs()
                return all(jobs[j].attempt == 2 for j in held)
            await async_wait_until(requeued_in_store, timeout=60, what="the victim's jobs requeued in the store")
        back = time.monotonic()
        await run.all_done("every job after the lost host", timeout=90)
        recovery["host lost, broker away"] = time.monotonic() - back
        print("\nevery job done and announced, after the service came back: "
              + ", ".join(f"{what} {seconds:.1f}s" for what, seconds in recovery.items()))

        # -- every job ended once, as its step says, with one terminal event --------------
        jobs = await run.jobs()
        assert {j: r.state for j, r in jobs.items()} == run.expected
        for job_id, record in jobs.items():
            history = await store.attempts(job_id)
            ended = [a for a in history if not taken_back(a)]
            assert len(ended) == 1 and ended[0] is history[-1], (job_id, history)
            # Only the killed node's attempts were taken back from their host by others: no false
            # lapse after the store outage. (A live node may finish an attempt of its own whose claim
            # committed as the connection died, once it is sure it does not run it.)
            assert all(a.host == VICTIM or "without recording its end" in a.reason
                       for a in history if taken_back(a)), (job_id, history)
            ends = {e.event_id: e for e in events.terminal(job_id)}  # a redelivered copy counts once
            assert len(ends) == 1, f"{job_id} announced terminal {len(ends)} times"
            [end] = ends.values()
            assert (JobState(end.state), end.attempt) == (record.state, record.attempt), job_id
        assert held <= {j for j, r in jobs.items() if r.attempt == 2}

        # -- the live nodes still serve: they heartbeat, take new work and stop cleanly ----
        alive = {h.name for h in await store.list_hosts(stale_after=3) if h.alive}
        assert alive == set(HOSTS) - {VICTIM}
        assert all(nodes[h].serving() for h in alive)
        last = await run.publish(4, step="true")
        await async_wait_until(lambda: run.done(last), timeout=60, what="new work after the faults")
        for host in alive:
            assert await nodes[host].terminate() == 0, f"{host} did not shut down cleanly:\n{nodes[host].tail()}"

