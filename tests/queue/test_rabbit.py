"""RabbitMQ-only behaviour: poison messages, events, fail-fast, and surviving connection loss."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from common.queue import (
    Disposition,
    EventConsumer,
    QueueError,
    QueueUnavailable,
    RabbitEventPublisher,
    RabbitJobPublisher,
)
from common.queue.topology import REASON_HEADER
from common.rpc import jobs_pb2
from tests.queue.broker import amqp_channel
from tests.queue.conftest import Gate, RabbitHarness, Recorder, job
from tests.waiting import async_wait_until


async def raw_publish(harness: RabbitHarness, body: bytes, label: str, message_id: str | None = None) -> None:
    """Publish bytes as a foreign or buggy producer would, bypassing our encoder."""
    async with amqp_channel(harness.url) as channel:  # with publisher confirms
        exchange = await channel.get_exchange(harness.topology.jobs_exchange)
        await exchange.publish(aio_pika.Message(body, message_id=message_id), routing_key=label)


async def test_poison_messages_are_dead_lettered_with_a_reason(rabbit: RabbitHarness) -> None:
    recorder = Recorder()
    await rabbit.node(["a"], recorder)
    await raw_publish(rabbit, b"\xff\xfe not protobuf at all", "a")
    await raw_publish(rabbit, job("future", "a", schema_version=99).SerializeToString(), "a", message_id="future")
    await raw_publish(rabbit, job("", "a").SerializeToString(), "a")
    await rabbit.publish([job("fine", "a")])

    # "fine" is published last, on a connection of its own: its ack may come after the dead letters.
    await async_wait_until(lambda: len(recorder.dead) == 3 and recorder.acked, timeout=60, what="3 dead letters")
    assert recorder.acked == ["fine"]
    assert sorted(recorder.dead, key=lambda d: d[1]) == [
        (None, "the job request lacks required field(s): job_id"),
        (None, "the message is not a JobRequest (Error parsing message with type "
               "'solstice.v1.JobRequest': Wire format was corrupt)"),
        ("future", "unknown schema_version 99 (this node understands 1)"),
    ]

    retained = await rabbit.dead_queue()
    assert sorted(m.headers[REASON_HEADER] for m in retained) == sorted(r for _, r in recorder.dead)


async def test_events_round_trip_with_topic_bindings(rabbit: RabbitHarness) -> None:
    everything: list[jobs_pb2.JobEvent] = []
    job_level: list[jobs_pb2.JobEvent] = []

    def collect(into: list[jobs_pb2.JobEvent]):
        async def handle(event: jobs_pb2.JobEvent) -> Disposition:
            into.append(event)
            return Disposition.ACK
        return handle

    consumers = [
        EventConsumer(rabbit.url, "reporter", collect(everything), rabbit.topology),
        EventConsumer(rabbit.url, "jobs-only", collect(job_level), rabbit.topology, bindings=("job.#",)),
    ]
    for consumer in consumers:
        await consumer.start()
    try:
        async with RabbitEventPublisher(rabbit.url, rabbit.topology) as publisher:
            await publisher.publish([
                jobs_pb2.JobEvent(event_id="e1", job_id="j1", state=jobs_pb2.JOB_STATE_RUNNING, host="h1"),
                jobs_pb2.JobEvent(
                    event_id="e2", job_id="j1", state=jobs_pb2.JOB_STATE_RUNNING,
                    step=jobs_pb2.StepResult(index=0, name="Test", state=jobs_pb2.STEP_STATE_SUCCEEDED),
                ),
                jobs_pb2.JobEvent(event_id="e3", job_id="j1", state=jobs_pb2.JOB_STATE_SUCCEEDED, reason=""),
            ])
        await async_wait_until(lambda: len(everything) == 3 and len(job_level) == 2, timeout=60, what="events")
        assert sorted(e.event_id for e in everything) == ["e1", "e2", "e3"]
        assert sorted(e.event_id for e in job_level) == ["e1", "e3"]
        by_id = {e.event_id: e for e in everything}
        assert by_id["e2"].step.name == "Test" and by_id["e1"].host == "h1"
        assert all(e.schema_version == jobs_pb2.SCHEMA_VERSION_1 for e in everything)
    finally:
        for consumer in consumers:
            await consumer.stop(grace=5)


async def test_event_handler_can_ask_for_requeue(rabbit: RabbitHarness) -> None:
    calls: list[str] = []

    async def flaky(event: jobs_pb2.JobEvent) -> Disposition:
        calls.append(event.event_id)
        return Disposition.REQUEUE if len(calls) == 1 else Disposition.ACK

    consumer = EventConsumer(rabbit.url, "reporter", flaky, rabbit.topology)
    await consumer.start()
    try:
        async with RabbitEventPublisher(rabbit.url, rabbit.topology) as publisher:
            await publisher.publish([jobs_pb2.JobEvent(event_id="e1", job_id="j1", state=jobs_pb2.JOB_STATE_FAILED)])
        await async_wait_until(lambda: len(calls) == 2, timeout=60, what="redelivered event")
        assert calls == ["e1", "e1"]
    finally:
        await consumer.stop(grace=5)


async def test_start_fails_fast_when_the_broker_is_unreachable(rabbit: RabbitHarness) -> None:
    proxy = await rabbit.proxy()
    url = proxy.url_for(rabbit.url)
    await proxy.close()  # nothing listens on that port any more
    publisher = RabbitJobPublisher(url, rabbit.topology)
    with pytest.raises(QueueUnavailable, match="cannot connect to RabbitMQ") as caught:
        await publisher.start()
    assert "guest:guest" not in str(caught.value)


async def test_connection_cut_mid_callback_redelivers(rabbit: RabbitHarness) -> None:
    proxy = await rabbit.proxy()
    gate = Gate()
    recorder = Recorder(gate.held)
    await rabbit.node(["a"], recorder, free_slots=1, url=proxy.url_for(rabbit.url))
    await rabbit.publish([job("j1", "a")])
    await async_wait_until(lambda: recorder.active == 1, timeout=60, what="callback running")

    assert proxy.cut() > 0
    # The broker takes the unacked message back and hands it out again once the node reconnects,
    # while the first callback is still running (it is not cancelled by the lost connection).
    await async_wait_until(lambda: recorder.active == 2, timeout=90, what="redelivery after the cut")
    assert recorder.job_ids == ["j1", "j1"]
    gate.open_all = True
    gate.release(2)
    await async_wait_until(lambda: len(recorder.acked) == 2, timeout=60, what="both callbacks returned")
    # The first callback's ack went to a dead channel; the second one settled the message.
    await async_wait_until(lambda: rabbit.nodes[0].in_flight == 0, timeout=60, what="settled")
    assert await rabbit.ready("a") == 0


async def test_no_job_lost_while_connections_are_cut(rabbit: RabbitHarness) -> None:
    proxy = await rabbit.proxy()
    url = proxy.url_for(rabbit.url)
    recorder = Recorder()
    await rabbit.node(["a", "b"], recorder, free_slots=8, url=url)
    publisher = await rabbit.publisher(url)

    expected = {f"job-{i}" for i in range(200)}
    for batch in range(10):
        requests = [job(f"job-{batch * 20 + i}", "a" if i % 2 else "b") for i in range(20)]
        publish = asyncio.create_task(publisher.publish(requests))
        if batch % 3 == 1:
            proxy.cut()
        await publish

    await async_wait_until(lambda: set(recorder.acked) >= expected, timeout=120, what="all 200 jobs consumed")
    assert set(recorder.acked) == expected
    assert recorder.dead == []
    assert proxy.cuts >= 3 and proxy.accepted > 1  # the clients really reconnected


async def test_capacity_change_during_an_outage_applies_on_reconnection(rabbit: RabbitHarness) -> None:
    proxy = await rabbit.proxy()
    recorder = Recorder()
    node = await rabbit.node(["a"], recorder, free_slots=0, url=proxy.url_for(rabbit.url))
    await rabbit.publish([job("j1", "a"), job("j2", "a")])
    assert await rabbit.ready("a") == 2  # paused: nothing handed out

    proxy.refusing = True
    proxy.cut()
    await async_wait_until(lambda: not node.connected, timeout=30, what="the node noticing the outage")
    await async_wait_until(lambda: proxy.refused > 0, timeout=30, what="a refused reconnection attempt")
    # Must neither raise nor block while the broker is away.
    await asyncio.wait_for(node.set_free_slots(2), timeout=5)
    assert recorder.jobs == []

    proxy.refusing = False
    await async_wait_until(lambda: sorted(recorder.acked) == ["j1", "j2"], timeout=60, what="jobs after reconnection")
    assert node.connected
    # The handler returns before the worker acks and counts: wait for the acks themselves.
    await async_wait_until(lambda: node.stats.acked == 2, timeout=30, what="both acks sent")


async def test_events_wait_for_a_subscriber_declared_by_the_publisher(rabbit: RabbitHarness) -> None:
    received: list[str] = []

    async def handle(event: jobs_pb2.JobEvent) -> Disposition:
        received.append(event.event_id)
        return Disposition.ACK

    async with RabbitEventPublisher(rabbit.url, rabbit.topology, subscribers=[("reporter", ("job.#",))]) as publisher:
        await publisher.publish([
            jobs_pb2.JobEvent(event_id="before", job_id="j1", state=jobs_pb2.JOB_STATE_QUEUED),
            jobs_pb2.JobEvent(
                event_id="step", job_id="j1", state=jobs_pb2.JOB_STATE_RUNNING,
                step=jobs_pb2.StepResult(index=0, name="Test", state=jobs_pb2.STEP_STATE_RUNNING),
            ),
        ])
        assert publisher.stats.confirmed == 1 and publisher.stats.returned == 1  # the step event has no queue
    consumer = EventConsumer(rabbit.url, "reporter", handle, rabbit.topology, bindings=("job.#",))
    await consumer.start()
    try:
        await async_wait_until(lambda: received == ["before"], timeout=60, what="the event published before")
        await async_wait_until(lambda: consumer.stats.acked == 1, timeout=60, what="the ack")
    finally:
        await consumer.stop(grace=5)


async def test_a_conflicting_queue_declaration_is_a_clear_error(rabbit: RabbitHarness) -> None:
    async with amqp_channel(rabbit.url) as channel:
        # As an older version might have left it: the label queue without its dead-letter exchange.
        await channel.declare_queue(rabbit.topology.label_queue("a"), durable=True)
    with pytest.raises(QueueError, match="refused the queue topology") as caught:
        await rabbit.node(["a"], Recorder())
    assert not isinstance(caught.value, QueueUnavailable)
    assert "guest:guest" not in str(caught.value)
