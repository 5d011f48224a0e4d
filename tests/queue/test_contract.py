"""The job-consumer contract, run against RabbitMQ and against the single-node SQLite queue."""

from __future__ import annotations

from common.queue import Disposition
from common.rpc import jobs_pb2
from tests.queue.conftest import Gate, LocalHarness, RabbitHarness, Recorder, job
from tests.waiting import async_wait_until

Harness = RabbitHarness | LocalHarness


async def test_round_trip_by_label(harness: Harness) -> None:
    recorder = Recorder()
    await harness.node(["a", "ubuntu-22.04"], recorder)
    sent = [job(f"a{i}", "a") for i in range(3)] + [job(f"u{i}", "ubuntu-22.04") for i in range(2)]
    sent[0].env["GREETING"] = "hello"
    await harness.publish(sent)

    await async_wait_until(lambda: len(recorder.acked) == 5, timeout=60, what="5 jobs acked")
    assert sorted(recorder.job_ids) == sorted(r.job_id for r in sent)
    received = {r.job_id: r for r in recorder.jobs}
    assert received["a0"].env["GREETING"] == "hello"
    assert received["u1"].runs_on == "ubuntu-22.04"
    assert received["a2"].schema_version == jobs_pb2.SCHEMA_VERSION_1
    assert recorder.dead == []


async def test_node_receives_only_its_labels_and_unroutable_is_dead_lettered(harness: Harness) -> None:
    recorder = Recorder()
    await harness.node(["a"], recorder)
    await harness.publish([job("a1", "a"), job("x1", "nobody-serves-this"), job("a2", "a")])

    await async_wait_until(lambda: len(recorder.acked) == 2 and recorder.dead, timeout=60,
                           what="a-jobs and a dead letter")
    assert sorted(recorder.job_ids) == ["a1", "a2"]
    [(job_id, reason)] = recorder.dead
    assert job_id == "x1"
    assert "unroutable" in reason and "nobody-serves-this" in reason


async def test_prefetch_is_free_slots_and_follows_capacity(harness: Harness) -> None:
    gate = Gate()
    recorder = Recorder(gate.held)
    node = await harness.node(["a"], recorder, free_slots=2)
    await harness.publish([job(f"j{i}", "a") for i in range(6)])

    await async_wait_until(lambda: recorder.active == 2, timeout=60, what="2 jobs in flight")
    for done in range(1, 5):
        gate.release()
        await async_wait_until(lambda done=done: len(recorder.acked) == done, timeout=60, what=f"{done} acked")
        await async_wait_until(lambda done=done: recorder.active == min(2, 6 - done), timeout=60,
                               what="next job in flight")
    assert recorder.max_active == 2

    # More capacity: the remaining jobs plus new ones may run three at a time.
    await node.set_free_slots(3)
    await harness.publish([job(f"k{i}", "a") for i in range(4)])
    await async_wait_until(lambda: recorder.active == 3, timeout=60, what="3 jobs in flight")
    assert recorder.max_active == 3
    gate.open_all = True
    gate.release(10)
    await async_wait_until(lambda: len(recorder.acked) == 10, timeout=60, what="all acked")
    assert sorted(set(recorder.acked)) == sorted([f"j{i}" for i in range(6)] + [f"k{i}" for i in range(4)])


async def test_zero_free_slots_pauses_deliveries(harness: Harness) -> None:
    recorder = Recorder()
    node = await harness.node(["a"], recorder, free_slots=1)
    await harness.publish([job("first", "a")])
    await async_wait_until(lambda: recorder.acked == ["first"], timeout=60, what="first job")

    await node.set_free_slots(0)
    await harness.publish([job("second", "a")])
    # While paused the message waits in the queue instead of being handed out.
    await async_wait_until(lambda: harness.ready("a"), timeout=60, what="second job waiting in the queue")
    assert recorder.job_ids == ["first"]
    assert node.in_flight == 0
    await node.set_free_slots(1)
    await async_wait_until(lambda: recorder.acked == ["first", "second"], timeout=60, what="second job after resume")


async def test_failing_callback_is_retried_then_dead_lettered(harness: Harness) -> None:
    async def broken(request: jobs_pb2.JobRequest) -> Disposition:
        if request.job_id == "bad":
            raise RuntimeError("disk full")
        return Disposition.ACK

    recorder = Recorder(broken)
    await harness.node(["a"], recorder, max_attempts=3)
    await harness.publish([job("bad", "a"), job("good", "a")])

    await async_wait_until(lambda: recorder.dead, timeout=60, what="dead letter")
    [(job_id, reason)] = recorder.dead
    assert job_id == "bad"
    assert "3 times" in reason and "disk full" in reason
    assert recorder.job_ids.count("bad") == 3
    assert recorder.acked == ["good"]


async def test_callback_can_requeue_or_dead_letter(harness: Harness) -> None:
    seen: dict[str, int] = {}

    async def decide(request: jobs_pb2.JobRequest) -> Disposition:
        seen[request.job_id] = seen.get(request.job_id, 0) + 1
        if request.job_id == "later" and seen["later"] == 1:
            return Disposition.REQUEUE
        if request.job_id == "never":
            return Disposition.dead_letter("workflow needs an image this site does not have")
        return Disposition.ACK

    recorder = Recorder(decide)
    await harness.node(["a"], recorder)
    await harness.publish([job("later", "a"), job("never", "a")])

    await async_wait_until(lambda: recorder.acked == ["later"] and recorder.dead, timeout=60,
                           what="requeue and dead letter")
    assert seen == {"later": 2, "never": 1}
    assert recorder.dead == [("never", "workflow needs an image this site does not have")]


async def test_unacked_job_is_redelivered_to_the_next_node(harness: Harness) -> None:
    """A node that stops (or dies) before its callback returned does not lose the job."""
    gate = Gate()
    first = Recorder(gate.held)
    node = await harness.node(["a"], first, free_slots=1)
    await harness.publish([job("j1", "a")])
    await async_wait_until(lambda: first.active == 1, timeout=60, what="callback running")

    await node.stop(grace=0)  # the callback is cancelled before it could ack
    assert first.acked == []
    second = Recorder()
    await harness.node(["a"], second, free_slots=1)
    await async_wait_until(lambda: second.acked == ["j1"], timeout=60, what="redelivery to the next node")


async def test_job_that_kills_its_node_every_time_is_dead_lettered(harness: Harness) -> None:
    """A delivery never settled (the node died or stopped mid-claim) counts as a failed attempt."""
    gate = Gate()  # never released: every node "dies" holding the job
    recorder = Recorder(gate.held)
    for node_number in range(3):
        node = await harness.node(["a"], recorder, free_slots=1, max_attempts=3)
        if node_number == 0:
            await harness.publish([job("killer", "a")])
        await async_wait_until(lambda: recorder.active == 1, timeout=60, what=f"node {node_number} holding the job")
        await node.stop(grace=0)
    assert recorder.job_ids == ["killer"] * 3

    survivor = Recorder()
    await harness.node(["a"], survivor, free_slots=1, max_attempts=3)
    await async_wait_until(lambda: survivor.dead, timeout=60, what="dead letter")
    assert survivor.job_ids == []  # not handed to on_job a fourth time
    [(job_id, reason)] = survivor.dead
    assert job_id == "killer"
    assert reason.startswith("gave up after 3 attempts; the last delivery was never settled")


async def test_requeued_and_failed_jobs_go_to_the_back_of_the_queue(harness: Harness) -> None:
    calls: list[str] = []

    async def decide(request: jobs_pb2.JobRequest) -> Disposition:
        calls.append(request.job_id)
        if calls.count(request.job_id) == 1 and request.job_id == "requeued":
            return Disposition.REQUEUE
        if calls.count(request.job_id) == 1 and request.job_id == "failing":
            raise RuntimeError("state store briefly unavailable")
        return Disposition.ACK

    recorder = Recorder(decide)
    node = await harness.node(["a"], recorder, free_slots=0)  # paused while the queue fills
    for name in ("requeued", "failing", "plain"):  # one by one: a batch is published concurrently
        await harness.publish([job(name, "a")])
    await node.set_free_slots(1)
    await async_wait_until(lambda: len(recorder.acked) == 3, timeout=60, what="all three acked")
    assert calls == ["requeued", "failing", "plain", "requeued", "failing"]


async def test_paused_labels_wait_while_the_others_are_delivered(harness: Harness) -> None:
    """A node stops consuming a label at its limit: its requests stay in the queue for any node."""
    recorder = Recorder()
    node = await harness.node(["a", "b"], recorder, free_slots=4)
    await node.set_paused_labels(frozenset({"b"}))
    await harness.publish([job("b1", "b"), job("a1", "a"), job("b2", "b"), job("a2", "a")])
    await async_wait_until(lambda: sorted(recorder.acked) == ["a1", "a2"], timeout=60, what="the a jobs")
    assert await harness.ready("b") == 2
    await node.set_paused_labels(frozenset())
    await async_wait_until(lambda: sorted(recorder.acked) == ["a1", "a2", "b1", "b2"], timeout=60, what="the b jobs")
