"""The single-node event bus: topic routing, ack-after-handler, dead letters, and restarts."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from common.queue import Disposition, InvalidMessage, LocalEventBus, QueueError
from common.queue.local_events import topic_matches
from common.rpc import jobs_pb2
from tests.queue.conftest import Gate
from tests.waiting import async_wait_until

Handler = Callable[[jobs_pb2.JobEvent], Awaitable[Disposition]]


def event(event_id: str, job_id: str = "j1", state: int = jobs_pb2.JOB_STATE_RUNNING,
          step: bool = False) -> jobs_pb2.JobEvent:
    made = jobs_pb2.JobEvent(event_id=event_id, job_id=job_id, state=state)  # type: ignore[arg-type]
    if step:
        made.step.CopyFrom(jobs_pb2.StepResult(index=0, name="Test", state=jobs_pb2.STEP_STATE_SUCCEEDED))
    return made


class Collector:
    """A handler recording every event it is given; ``then`` decides the outcome."""

    def __init__(self, then: Handler | None = None) -> None:
        self.events: list[jobs_pb2.JobEvent] = []
        self.then = then

    @property
    def ids(self) -> list[str]:
        return [e.event_id for e in self.events]

    async def __call__(self, received: jobs_pb2.JobEvent) -> Disposition:
        self.events.append(received)
        return await self.then(received) if self.then else Disposition.ACK


async def rows_left(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM event_queue").fetchone()[0])


@pytest.mark.parametrize(
    ("binding", "key", "expected"),
    [
        ("#", "job.running.j1", True),
        ("job.#", "job.running.j1", True),
        ("job.#", "step.running.j1", False),
        ("*.succeeded.*", "job.succeeded.j1", True),
        ("*.succeeded.*", "job.failed.j1", False),
        ("step.*", "step.running.j1", False),  # '*' is exactly one word
        ("job.running.j1.#", "job.running.j1", True),  # '#' may be zero words
        ("#.j1", "step.running.j1", True),
        ("#.j2", "step.running.j1", False),
    ],
)
def test_topic_matching_follows_amqp(binding: str, key: str, expected: bool) -> None:
    assert topic_matches(binding, key) is expected


async def test_events_reach_each_subscriber_by_binding(tmp_path: Path) -> None:
    everything, job_level = Collector(), Collector()
    bus = LocalEventBus(tmp_path / "q.sqlite")
    bus.subscribe("reporter", everything)
    bus.subscribe("jobs-only", job_level, bindings=("job.#",))
    async with bus:
        await bus.publish([event("e1"), event("e2", step=True), event("e3", state=jobs_pb2.JOB_STATE_SUCCEEDED)])
        await async_wait_until(lambda: len(everything.events) == 3 and len(job_level.events) == 2, what="events")
        await async_wait_until(lambda: bus.in_flight == 0, what="settled")
    assert sorted(everything.ids) == ["e1", "e2", "e3"]
    assert sorted(job_level.ids) == ["e1", "e3"]
    assert all(e.schema_version == jobs_pb2.SCHEMA_VERSION_1 for e in everything.events)
    assert await rows_left(tmp_path / "q.sqlite") == 0


async def test_restart_redelivers_unacked_and_keeps_events_for_absent_subscribers(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    gate = Gate()  # never released: the first process dies with e1 unacked

    async def hold(_: jobs_pb2.JobEvent) -> Disposition:
        await gate.wait()
        return Disposition.ACK

    held = Collector(hold)
    first = LocalEventBus(path)
    first.subscribe("reporter", held, prefetch=1)
    await first.start()
    await first.publish([event("e1"), event("e2")])
    await async_wait_until(lambda: held.ids == ["e1"], what="e1 handed out")
    await first.stop(grace=0)  # the held handler is cancelled: e1 was never acked

    # A process without the reporter (say, only the orchestrator) still stores its events.
    orchestrator_only = LocalEventBus(path)
    async with orchestrator_only:
        await orchestrator_only.publish([event("e3")])

    again = Collector()
    second = LocalEventBus(path)
    second.subscribe("reporter", again)
    async with second:
        await async_wait_until(lambda: sorted(again.ids) == ["e1", "e2", "e3"], what="every event after restart")
        await async_wait_until(lambda: second.in_flight == 0, what="settled")
    assert await rows_left(path) == 0


async def test_failing_handler_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    async def explode(received: jobs_pb2.JobEvent) -> Disposition:
        if received.event_id == "bad":
            raise RuntimeError("forge said 502")
        return Disposition.ACK

    collector = Collector(explode)
    bus = LocalEventBus(tmp_path / "q.sqlite", max_attempts=3)
    bus.subscribe("reporter", collector)
    async with bus:
        await bus.publish([event("bad"), event("good")])
        await async_wait_until(lambda: len(collector.events) == 4, what="3 tries of bad and good once")
        dead = await async_wait_until(bus.dead_letters, what="a dead letter")
    assert sorted(collector.ids) == ["bad", "bad", "bad", "good"]
    assert dead == [("reporter", "bad", "the handler failed 3 times; last error: RuntimeError: forge said 502")]
    assert await rows_left(tmp_path / "q.sqlite") == 0


async def test_requeue_and_explicit_dead_letter(tmp_path: Path) -> None:
    async def decide(received: jobs_pb2.JobEvent) -> Disposition:
        if received.event_id == "later":
            return Disposition.REQUEUE if collector.ids.count("later") == 1 else Disposition.ACK
        return Disposition.dead_letter("the forge no longer knows this commit")

    collector = Collector(decide)
    bus = LocalEventBus(tmp_path / "q.sqlite")
    bus.subscribe("reporter", collector)
    async with bus:
        await bus.publish([event("later"), event("never")])
        dead = await async_wait_until(bus.dead_letters, what="a dead letter")
        await async_wait_until(lambda: collector.ids.count("later") == 2, what="the requeued event again")
        await async_wait_until(lambda: bus.in_flight == 0, what="settled")
    assert dead == [("reporter", "never", "the forge no longer knows this commit")]
    assert await rows_left(tmp_path / "q.sqlite") == 0


async def test_undecodable_row_is_dead_lettered_not_handled(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    collector = Collector()
    bus = LocalEventBus(path)
    bus.subscribe("reporter", collector)
    async with bus:
        pass  # creates the tables and the subscription
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO event_queue (subscriber, event_id, body, enqueued_at) VALUES ('reporter', 'x', ?, 0)",
            (b"\xff\xfe garbage",),
        )
    bus = LocalEventBus(path)
    bus.subscribe("reporter", collector)
    async with bus:
        await bus.publish([event("fine")])
        await async_wait_until(lambda: collector.ids == ["fine"], what="the good event")
        dead = await async_wait_until(bus.dead_letters, what="the poison row dead-lettered")
    assert dead[0][:2] == ("reporter", "x") and "not a JobEvent" in dead[0][2]


async def test_misuse_is_refused(tmp_path: Path) -> None:
    bus = LocalEventBus(tmp_path / "q.sqlite")
    with pytest.raises(InvalidMessage):
        bus.subscribe("bad name", Collector())
    with pytest.raises(InvalidMessage):
        bus.subscribe("reporter", Collector(), bindings=("job.run*",))
    with pytest.raises(QueueError, match="not started"):
        await bus.publish([event("e1")])
    async with bus:
        with pytest.raises(QueueError, match="before start"):
            bus.subscribe("late", Collector())
        with pytest.raises(InvalidMessage, match="event_id"):
            await bus.publish([jobs_pb2.JobEvent(job_id="j1")])
