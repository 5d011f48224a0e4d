"""PostgreSQL unreachable for a few seconds while jobs arrive and others finish: nothing is lost,
nothing is stranded, nothing runs twice.

The node reaches PostgreSQL through a TCP proxy of the test's own, which cuts every connection and
refuses new ones for the outage (the shared database itself keeps running). Before:

* each request delivered during the outage used up its attempts within milliseconds, was
  dead-lettered, and the dead-letter handler gave up on it too: the job was never stored;
* each attempt that finished during the outage logged "cannot record the failure" and stayed
  ``running`` for good (its host kept heartbeating, so no sweep took it).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from common.config import Seconds
from orchestrator.names import vm_name
from orchestrator.queue import RabbitJobConsumer
from orchestrator.store import JobState, StoreUnavailable
from tests.node.conftest import Cluster
from tests.node.harness import driver_of, job, local_node, local_settings
from tests.proxy import TcpProxy
from tests.waiting import async_wait_until

R, S = JobState.RUNNING, JobState.SUCCEEDED


@contextlib.asynccontextmanager
async def store_proxy(cluster: Cluster) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(cluster.pg)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def states(cluster: Cluster, job_ids: list[str]) -> dict[str, JobState]:
    return {j: r.state for j in job_ids if (r := await cluster.store.get_job(j)) is not None}


async def test_a_store_outage_loses_no_delivery_and_strands_no_finishing_job(cluster: Cluster) -> None:
    async with (store_proxy(cluster) as proxy,
                cluster.node(cluster.settings(store_url=proxy.dsn_for(cluster.pg))) as node):
        finishing = [f"fin-{i}" for i in range(4)]
        arriving = [f"new-{i}" for i in range(6)]
        await cluster.publish(*(job(j, steps=("sleep 1",)) for j in finishing))

        async def all_running() -> bool:
            return list((await states(cluster, finishing)).values()) == [R] * 4
        await async_wait_until(all_running, what="4 jobs running")
        consumer = node.consumer
        assert isinstance(consumer, RabbitJobConsumer)
        driver = driver_of(node)
        async with proxy.outage():
            await cluster.publish(*(job(j) for j in arriving))

            def held_long_enough() -> bool:
                # The running jobs ended (their VMs are gone), and the new requests came round more
                # often than they have attempts (or, before, were dead-lettered).
                torn_down = all(vm_name(j, 1) in driver.destroyed for j in finishing)
                stats = consumer.stats
                return torn_down and (stats.delivered >= 4 + 6 * 6 or stats.dead_lettered > 0)
            await async_wait_until(held_long_enough, what="the jobs ended and the requests came round")
        for job_id in finishing + arriving:
            record = await cluster.finished(job_id)
            assert (record.state, record.attempt) == (S, 1), job_id
            assert len({e.event_id for e in cluster.events.terminal(job_id)}) == 1, job_id  # copies allowed
        assert consumer.stats.dead_lettered == 0 and consumer.stats.retried == 0
        assert node.outcomes.kept == 4  # each end waited on the node's disk for the store
        assert not list((node.settings.data_dir / "outcomes").glob("*.pb"))


async def test_an_outcome_kept_on_disk_is_recorded_when_the_node_starts_again(cluster: Cluster) -> None:
    async with store_proxy(cluster) as proxy:
        settings = cluster.settings(store_url=proxy.dsn_for(cluster.pg), timers__shutdown_grace=Seconds(0.5))
        async with cluster.node(settings) as node:
            await cluster.publish(job("kept", steps=("sleep 1",)))

            async def running() -> bool:
                return (await states(cluster, ["kept"])).get("kept") is R
            await async_wait_until(running, what="kept running")
            async with proxy.outage():
                await async_wait_until(lambda: vm_name("kept", 1) in driver_of(node).destroyed, what="kept ended")
                await async_wait_until(lambda: (settings.data_dir / "outcomes" / "kept.1.pb").exists(),
                                       what="its end kept on disk")
                await node.close()  # stops trying; the store is still away
        assert (await cluster.store.get_job("kept")).state is R  # type: ignore[union-attr]
        assert [p.name for p in (settings.data_dir / "outcomes").iterdir()] == ["kept.1.pb"]
        async with cluster.node(dataclasses.replace(settings, store_url=cluster.pg)):
            record = await cluster.finished("kept")
            assert (record.state, record.attempt) == (S, 1)  # recorded, not requeued as a restart
        assert not list((settings.data_dir / "outcomes").iterdir())


async def test_a_node_finishes_its_own_attempts_it_no_longer_runs(cluster: Cluster) -> None:
    """The store says node-a holds an attempt that node-a does not run (a claim whose answer was
    lost, a failure nothing could record): node-a's own sweep requeues it, although node-a keeps
    heartbeating."""
    async with cluster.node(cluster.settings()):
        await cluster.store.submit(job("lost"))
        assert await cluster.store.claim("lost", 1, "node-a", vm_name("lost", 1))
        record = await cluster.finished("lost")
        assert (record.state, record.attempt, record.host) == (S, 2, "node-a")
        [first, _] = await cluster.store.attempts("lost")
        assert first.state is JobState.ERRORED and "without recording its end" in first.reason


async def test_a_claim_whose_answer_was_lost_is_taken_up_by_its_redelivery(tmp_path: Path) -> None:
    """The claim committed, then the connection died before its answer came: the delivery is
    tried again, finds the attempt provisioning on this very node, and starts it - attempt 1, not
    a requeue by the sweep (and before, not a job left provisioning for good)."""
    async with local_node(local_settings(tmp_path)) as node:
        store = node.store
        submit_claimed = store.submit_claimed
        lost: list[str] = []

        async def answer_lost(request, *args, **kwargs):  # type: ignore[no-untyped-def]
            record = await submit_claimed(request, *args, **kwargs)
            if not lost:
                lost.append(request.job_id)
                raise StoreUnavailable("lost the connection to SQLite database state.db after the commit")
            return record

        store.submit_claimed = answer_lost  # type: ignore[method-assign]
        await node.publish(job("unlucky"))
        await async_wait_until(lambda: _terminal(store, "unlucky"), what="unlucky done")
        assert lost == ["unlucky"]
        [attempt] = await store.attempts("unlucky")
        assert (attempt.attempt, attempt.state, attempt.host) == (1, S, "node-a")
        await async_wait_until(lambda: node.events.terminal("unlucky"), what="its terminal event")
        assert node.events.job_states("unlucky") == [JobState.PROVISIONING, R, S]


async def _terminal(store, job_id: str) -> bool:  # type: ignore[no-untyped-def]
    record = await store.get_job(job_id)
    return record is not None and record.terminal
