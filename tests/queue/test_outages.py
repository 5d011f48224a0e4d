"""Outages of what a handler depends on, and of the broker, are not the message's fault.

* A handler that fails because the store (or the broker) is unreachable gets its message
  back after a pause that grows while the outage lasts, without using up its attempts:
  a store outage of seconds must not dead-letter (and so lose) every job delivered in it.
* A dead letter's handler gets attempts of its own (not the ones its message used up in the
  job queue), and is never given up on while the store is unreachable.
* A publish that outlasts ``publish_timeout`` fails with one ``PublishFailed`` (a
  ``QueueError``), never an ``ExceptionGroup`` that no caller catches.
"""

from __future__ import annotations

import asyncio

import pytest

from common.queue import PublishFailed, QueueError, RabbitEventPublisher, RabbitJobPublisher
from common.rpc import jobs_pb2
from orchestrator.node.outbox import Outbox
from orchestrator.queue import RabbitJobConsumer
from orchestrator.store import StoreUnavailable
from tests.queue.conftest import Disposition, LocalHarness, RabbitHarness, Recorder, job
from tests.waiting import async_wait_until

Harness = RabbitHarness | LocalHarness


class Outage:
    """A dependency that is down until ``end()``; counts the calls it refused."""

    def __init__(self) -> None:
        self.down = True
        self.refused: dict[str, int] = {}

    def check(self, what: str) -> None:
        if self.down:
            self.refused[what] = self.refused.get(what, 0) + 1
            raise StoreUnavailable("lost the connection to PostgreSQL at db:5432/solstice: connection refused")

    def end(self) -> None:
        self.down = False


async def test_a_store_outage_does_not_use_up_a_messages_attempts(harness: Harness) -> None:
    outage = Outage()

    async def claim(request: jobs_pb2.JobRequest) -> Disposition:
        outage.check(request.job_id)
        return Disposition.ACK

    recorder = Recorder(claim)
    node = await harness.node(["a"], recorder, max_attempts=3)
    await harness.publish([job(f"j{n}", "a") for n in range(3)])
    # Each job meets the outage more often than it has attempts: before, the third failure
    # dead-lettered it within milliseconds.
    await async_wait_until(lambda: all(outage.refused.get(f"j{n}", 0) >= 4 for n in range(3)) or recorder.dead,
                           timeout=60, what="every job refused 4 times")
    outage.end()
    await async_wait_until(lambda: sorted(recorder.acked) == ["j0", "j1", "j2"] or recorder.dead,
                           timeout=60, what="every job claimed once the store is back")
    assert recorder.dead == []
    assert sorted(recorder.acked) == ["j0", "j1", "j2"]
    if isinstance(node, RabbitJobConsumer):  # counted as deferred, not as retried
        assert node.stats.deferred >= 12 and node.stats.retried == 0 and node.stats.dead_lettered == 0


class DeadLetters(Recorder):
    """``on_dead_letter`` that fails as ``failures`` says before it records."""

    def __init__(self, behaviour, failures: list[Exception]) -> None:  # type: ignore[no-untyped-def]
        super().__init__(behaviour)
        self.failures = failures
        self.calls = 0

    async def on_dead_letter(self, job_id: str | None, reason: str) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        await super().on_dead_letter(job_id, reason)


async def test_a_dead_letter_gets_attempts_of_its_own_and_outlives_a_store_outage(harness: Harness) -> None:
    async def broken(request: jobs_pb2.JobRequest) -> Disposition:
        raise RuntimeError("disk full")  # not an outage: the job's attempts are used up

    # The dead letter's handler fails once for a reason of its own (before, that was its only
    # try: it inherited the job queue's attempt count), then meets a store outage longer than
    # its attempts.
    failures: list[Exception] = [RuntimeError("a bug"), *[StoreUnavailable("db down")] * 5]
    recorder = DeadLetters(broken, failures)
    await harness.node(["a"], recorder, max_attempts=3)
    await harness.publish([job("doomed", "a")])
    await async_wait_until(lambda: recorder.dead, timeout=60, what="the dead letter handled")
    [(job_id, reason)] = recorder.dead
    assert job_id == "doomed" and "disk full" in reason
    assert recorder.calls == 7


async def test_a_publish_outlasting_publish_timeout_raises_one_queue_error(rabbit: RabbitHarness) -> None:
    proxy = await rabbit.proxy()
    url = proxy.url_for(rabbit.url)
    await rabbit.node(["a"], Recorder())  # declares the label queue
    jobs = RabbitJobPublisher(url, rabbit.topology, publish_timeout=1.0)
    events = RabbitEventPublisher(url, rabbit.topology, publish_timeout=1.0)
    async with jobs, events:
        proxy.refusing = True
        proxy.cut()
        with pytest.raises(QueueError) as caught:
            await jobs.publish([job("j1", "a"), job("j2", "a")])
        assert isinstance(caught.value, PublishFailed)
        with pytest.raises(PublishFailed):
            await events.publish([event("e1", "j1"), event("e2", "j2")])

        # The event outbox of a node rides out the same outage, however long, and delivers after.
        outbox = Outbox(events, retry_delay=0.05)
        task = asyncio.create_task(outbox.run())
        try:
            await outbox.publish([event("e3", "j3")])
            await async_wait_until(lambda: events.stats.retried >= 8, timeout=60,
                                   what="publishes retried past the timeout")
            assert not task.done()
            proxy.refusing = False
            assert await outbox.flush(60)
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def event(event_id: str, job_id: str) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(schema_version=jobs_pb2.SCHEMA_VERSION_1, event_id=event_id, job_id=job_id,
                             state=jobs_pb2.JOB_STATE_RUNNING)
