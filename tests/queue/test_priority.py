"""Later attempts of a job go ahead of new work, and label queues of an older version move to
priorities without losing a request.

A requeued attempt (its host was lost) or a retried one already waited its turn once: it is
published with ``ANOTHER_ATTEMPT`` and the label queues are declared with ``x-max-priority``
(the SQLite queue orders by a priority column). A queue's arguments cannot change in place, so a
node finding a label queue declared by a version before priorities re-declares it when nobody
consumes it, moving what waits in it; while another node consumes it, it uses it as it is.
"""

from __future__ import annotations

import aio_pika
import pytest
from aiormq.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

from common.queue.topology import ANOTHER_ATTEMPT
from tests.queue.broker import amqp_channel
from tests.queue.conftest import LocalHarness, RabbitHarness, Recorder, job
from tests.waiting import async_wait_until

Harness = RabbitHarness | LocalHarness


async def test_a_later_attempt_goes_ahead_of_new_work(harness: Harness) -> None:
    recorder = Recorder()
    node = await harness.node(["a"], recorder, free_slots=0)  # nothing handed out yet
    await harness.publish([job(f"new-{n}", "a") for n in range(3)])
    await harness.publish([job("again", "a")], priority=ANOTHER_ATTEMPT)
    await async_wait_until(lambda: _ready(harness, 4), timeout=30, what="4 requests waiting")
    await node.set_free_slots(1)
    await async_wait_until(lambda: len(recorder.acked) == 4, timeout=60, what="every request")
    assert recorder.job_ids[0] == "again"
    assert recorder.job_ids[1:] == ["new-0", "new-1", "new-2"]


async def _ready(harness: Harness, n: int) -> bool:
    return await harness.ready("a") == n


async def declare_older(rabbit: RabbitHarness, label: str) -> None:
    """The label queue as a version before priorities declared it, bound to the jobs exchange."""
    async with amqp_channel(rabbit.url) as channel:
        jobs = await rabbit.topology.declare_jobs(channel)
        queue = await channel.declare_queue(rabbit.topology.label_queue(label), durable=True,
                                            arguments=rabbit.topology.label_queue_arguments(priorities=False))
        await queue.bind(jobs, routing_key=label)


async def has_priorities(rabbit: RabbitHarness, label: str) -> bool:
    async with amqp_channel(rabbit.url) as channel:
        try:
            await channel.declare_queue(rabbit.topology.label_queue(label), durable=True,
                                        arguments=rabbit.topology.label_queue_arguments())
        except ChannelPreconditionFailed:
            return False
        return True


async def test_an_unused_older_label_queue_moves_to_priorities_with_what_waits_in_it(rabbit: RabbitHarness) -> None:
    await declare_older(rabbit, "a")
    await rabbit.publish([job(f"waiting-{n}", "a") for n in range(3)])
    assert not await has_priorities(rabbit, "a")
    recorder = Recorder()
    await rabbit.node(["a"], recorder)
    assert await has_priorities(rabbit, "a")
    await rabbit.publish([job("after", "a")])
    await async_wait_until(lambda: len(recorder.acked) == 4, timeout=60, what="every request")
    assert sorted(recorder.acked) == ["after", "waiting-0", "waiting-1", "waiting-2"]
    async with amqp_channel(rabbit.url) as channel:  # the holding queue is gone
        with pytest.raises(ChannelNotFoundEntity):
            await channel.declare_queue(rabbit.topology.migrating_queue("a"), passive=True)


async def test_an_older_label_queue_another_node_consumes_is_used_as_it_is(rabbit: RabbitHarness) -> None:
    await declare_older(rabbit, "a")
    connection = await aio_pika.connect(rabbit.url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        held: list[aio_pika.abc.AbstractIncomingMessage] = []
        queue = await channel.get_queue(rabbit.topology.label_queue("a"))

        async def older_node(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            held.append(message)  # an older node, busy with it

        await queue.consume(older_node)
        recorder = Recorder()
        await rabbit.node(["a"], recorder)
        assert not await has_priorities(rabbit, "a")
        await rabbit.publish([job(f"j{n}", "a") for n in range(4)])
        await async_wait_until(lambda: len(held) + len(recorder.acked) == 4, timeout=60, what="every request")
        assert len(held) == 1
    finally:
        await connection.close()
