"""The event outbox: announcing never blocks an attempt, and events leave in order, each once,
across publish failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from common.queue.errors import InvalidMessage, PublishFailed
from common.rpc import jobs_pb2
from orchestrator.node.outbox import Outbox
from orchestrator.store import JobState, open_store
from orchestrator.store.sqlstore import SqlStore
from tests.node.harness import job, local_node, local_settings
from tests.waiting import async_wait_until


class FlakyBus:
    """Refuses publishes while ``down``; records what it accepted."""

    def __init__(self) -> None:
        self.down = True
        self.refused = 0
        self.accepted: list[str] = []
        self.batches: list[list[str]] = []

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        if self.down:
            self.refused += 1
            raise PublishFailed("broker away")
        self.accepted.extend(e.event_id for e in events)
        self.batches.append([e.event_id for e in events])


def event(n: int, job_id: str = "j") -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(event_id=f"e{n}", job_id=job_id)


async def test_events_wait_out_an_outage_in_order_and_once() -> None:
    bus = FlakyBus()
    outbox = Outbox(bus, batch=2, retry_delay=0.01)
    task = asyncio.create_task(outbox.run())
    try:
        for n in range(5):
            # returns at once although the bus refuses everything
            await asyncio.wait_for(outbox.publish([event(n)]), 1.0)
        await async_wait_until(lambda: bus.refused >= 3, what="a few refused attempts")
        assert outbox.pending == 5 and bus.accepted == []
        assert not await outbox.flush(0.05)
        bus.down = False
        await outbox.publish([event(5)])
        assert await outbox.flush(10)
        assert bus.accepted == [f"e{n}" for n in range(6)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_past_the_limit_the_oldest_events_are_dropped_and_counted() -> None:
    bus = FlakyBus()
    outbox = Outbox(bus, limit=3)
    await outbox.publish([event(n) for n in range(5)])
    assert outbox.pending == 3 and outbox.dropped == 2
    bus.down = False
    task = asyncio.create_task(outbox.run())
    try:
        assert await outbox.flush(10)
        assert bus.accepted == ["e2", "e3", "e4"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_batch_holds_at_most_one_event_per_job() -> None:
    """A batch is published concurrently: two events of one job must never share one. A job's
    later event is passed over (not a stop), and each job's events still leave in order."""
    bus = FlakyBus()
    bus.down = False
    outbox = Outbox(bus, batch=10)
    await outbox.publish([event(0, "a"), event(1, "b"), event(2, "a"), event(3, "c"), event(4, "b")])
    task = asyncio.create_task(outbox.run())
    try:
        assert await outbox.flush(10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert bus.batches == [["e0", "e1", "e3"], ["e2", "e4"]]


async def test_a_backlog_of_one_job_is_sent_in_order_with_the_others_alongside() -> None:
    bus = FlakyBus()
    bus.down = False
    outbox = Outbox(bus, batch=3)
    await outbox.publish([event(n, "a") for n in range(20)] + [event(20, "b"), event(21, "c")])
    task = asyncio.create_task(outbox.run())
    try:
        assert await outbox.flush(10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [e for e in bus.accepted if e not in ("e20", "e21")] == [f"e{n}" for n in range(20)]
    assert all(sum(e not in ("e20", "e21") for e in batch) == 1 for batch in bus.batches)
    # The scan is bounded (4 x batch = 12 events): "b" joins once it is within 12 of the head,
    # "c" one batch later; unbounded, both would have gone out with "a"'s first event.
    batch_of = {e: n for n, batch in enumerate(bus.batches) for e in batch}
    assert (batch_of["e20"], batch_of["e21"]) == (batch_of["e9"], batch_of["e10"])


async def test_an_event_that_can_never_be_published_is_refused_at_once() -> None:
    outbox = Outbox(FlakyBus())
    with pytest.raises(InvalidMessage):
        await outbox.publish([event(1), jobs_pb2.JobEvent(job_id="j")])  # no event_id
    assert outbox.pending == 0


async def test_a_durable_outbox_loses_nothing_when_its_process_dies(tmp_path: Path) -> None:
    """Events stored by a node that died before the broker took them go out when it starts again,
    in order; a published event's row is deleted."""
    async with open_store(f"sqlite://{tmp_path}/state.db") as store:
        bus = FlakyBus()
        crashed = Outbox(bus, retry_delay=0.01, durable=(store, "node-a"))
        task = asyncio.create_task(crashed.run())
        await crashed.publish([event(0, "a"), event(1, "b")])
        await crashed.publish([event(2, "a")])
        await async_wait_until(lambda: bus.refused >= 1, what="a refused publish")
        task.cancel()  # the process dies: its memory is gone, the store is not
        await asyncio.gather(task, return_exceptions=True)

        bus.down = False
        restarted = Outbox(bus, durable=(store, "node-a"))
        assert await restarted.recover() == 3
        task = asyncio.create_task(restarted.run())
        try:
            await restarted.publish([event(3, "a")])
            assert await restarted.flush(10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert [e for e in bus.accepted if e != "e1"] == ["e0", "e2", "e3"]  # job a's order holds
        assert sorted(bus.accepted) == ["e0", "e1", "e2", "e3"]
        assert await store.outbox_rows("node-a") == []


async def test_a_live_node_publishes_what_a_dead_host_left(tmp_path: Path) -> None:
    async with open_store(f"sqlite://{tmp_path}/state.db") as store:
        await store.register_host("node-dead", ["l"], 1)
        await store.register_host("node-live", ["l"], 1)
        dead = Outbox(FlakyBus(), durable=(store, "node-dead"))
        await dead.publish([event(0, "a"), event(1, "a")])  # never sent: its bus is down, then it dies
        assert isinstance(store, SqlStore)
        await store.backend.run("UPDATE hosts SET last_heartbeat = last_heartbeat - 600 WHERE name = 'node-dead'")

        bus = FlakyBus()
        bus.down = False
        live = Outbox(bus, durable=(store, "node-live"))
        assert await live.adopt(stale_after=60) == 2
        assert await live.adopt(stale_after=60) == 0  # taken once
        task = asyncio.create_task(live.run())
        try:
            assert await live.flush(10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert bus.accepted == ["e0", "e1"]
        assert await store.outbox_rows("node-dead") == [] and await store.outbox_rows("node-live") == []


class Outage:
    """Between a node and its event bus: refuses every publish while ``down``."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.down = True

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        if self.down:
            raise PublishFailed("broker away")
        await self.inner.publish(events)


async def test_a_node_that_dies_with_unsent_events_sends_them_when_it_starts_again(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    async with local_node(settings, wrap_events=Outage) as node:
        await node.publish(job("quiet-1"), job("quiet-2", steps=("exit 3",)))

        async def both_done() -> bool:
            jobs = [await node.store.get_job(j) for j in ("quiet-1", "quiet-2")]
            return all(j is not None and j.terminal for j in jobs)
        await async_wait_until(both_done, what="both jobs finished in the store")
        assert node.events.terminal("quiet-1") == [] and node.events.terminal("quiet-2") == []
        # The process dies before its outbox could send anything: what it held in memory is gone.
        task = node.node._outbox_task
        assert task is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with local_node(settings) as again:
        for job_id, state in (("quiet-1", JobState.SUCCEEDED), ("quiet-2", JobState.FAILED)):
            await async_wait_until(lambda j=job_id: again.events.terminal(j), what=f"{job_id}'s terminal event")
            [end] = again.events.terminal(job_id)
            assert JobState(end.state) is state and end.host == "node-a"

        async def sent() -> bool:
            return await again.store.outbox_rows("node-a") == []
        await async_wait_until(sent, what="the outbox rows deleted once published")
