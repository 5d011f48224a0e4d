"""The durable outbox, on both back-ends: order, delete, adoption of a dead host's rows, and the job
requests a requeue or a retry stores with its new attempt."""

from __future__ import annotations

import asyncio

import pytest

from common.rpc import jobs_pb2
from orchestrator.store import Announce, JobRecord, JobState, OutboxMessage, OutboxRequest, RetryNotAllowed, Store
from orchestrator.store.sqlstore import SqlStore
from tests.store.conftest import OpenStores, drive


def event(n: int, job_id: str = "j1") -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(event_id=f"e{n}", job_id=job_id, reason=f"r{n}")


def ids(rows: list[tuple[int, jobs_pb2.JobEvent]]) -> list[str]:
    return [e.event_id for _, e in rows]


async def test_rows_come_back_in_order_until_deleted(store: Store) -> None:
    await store.outbox_add("host-a", [event(1)])
    await store.outbox_add("host-a", [event(2), event(3, "j2"), event(4)])
    await store.outbox_add("host-b", [event(9)])
    rows = await store.outbox_rows("host-a")
    assert ids(rows) == ["e1", "e2", "e3", "e4"]
    assert [seq for seq, _ in rows] == sorted(seq for seq, _ in rows)
    assert rows[2][1] == event(3, "j2")  # the whole event survives
    await store.outbox_delete(["e1", "e3", "unknown"])
    assert ids(await store.outbox_rows("host-a")) == ["e2", "e4"]
    assert ids(await store.outbox_rows("host-b")) == ["e9"]


async def test_a_final_transition_and_its_events_are_stored_together(store: Store) -> None:
    await drive(store, "j1", JobState.RUNNING)
    assert await store.transition_announced("j1", 1, JobState.SUCCEEDED, "", "host-a", [event(1), event(2)])
    assert ids(await store.outbox_rows("host-a")) == ["e1", "e2"]
    # Not applied (already finished): no events stored, the refusal is counted like transition's.
    assert not await store.transition_announced("j1", 1, JobState.FAILED, "late", "host-a", [event(3)])
    assert ids(await store.outbox_rows("host-a")) == ["e1", "e2"]
    assert await store.ignored_transitions() == 1
    job = await store.get_job("j1")
    assert job is not None and job.state is JobState.SUCCEEDED


async def test_a_claim_stores_its_events_only_when_it_wins(store: Store) -> None:
    await drive(store, "j1", JobState.QUEUED)
    assert await store.claim("j1", 1, "host-a", "vm-j1", events=[event(1), event(2)])
    assert ids(await store.outbox_rows("host-a")) == ["e1", "e2"]
    assert not await store.claim("j1", 1, "host-b", "vm-j1", events=[event(3)])  # another host holds it
    assert await store.outbox_rows("host-b") == []
    # The holder's redelivery claims again (True), so its events are stored too.
    assert await store.claim("j1", 1, "host-a", "vm-j1", events=[event(4)])
    assert ids(await store.outbox_rows("host-a")) == ["e1", "e2", "e4"]


async def test_a_step_report_stores_its_event_only_when_recorded(store: Store) -> None:
    await drive(store, "j1", JobState.RUNNING)
    done = jobs_pb2.StepResult(index=0, name="build", state=jobs_pb2.STEP_STATE_SUCCEEDED, exit_code=0)
    assert await store.record_step("j1", 1, done, host="host-a", events=[event(1)])
    # A final step never changes: the late report is ignored, and so is its event.
    late = jobs_pb2.StepResult(index=0, name="build", state=jobs_pb2.STEP_STATE_FAILED, exit_code=1)
    assert not await store.record_step("j1", 1, late, host="host-a", events=[event(2)])
    assert ids(await store.outbox_rows("host-a")) == ["e1"]
    [step] = await store.steps("j1", 1)
    assert step.exit_code == 0


async def test_a_lapsed_hosts_rows_are_adopted_once(store: Store, open_stores: OpenStores) -> None:
    await store.register_host("dead", ["l"], 1)
    await store.register_host("live-1", ["l"], 1)
    await store.register_host("live-2", ["l"], 1)
    await store.outbox_add("dead", [event(1), event(2)])
    await store.outbox_add("never-registered", [event(3, "j3")])
    await store.outbox_add("live-2", [event(4, "j4")])
    # Nothing has lapsed with a generous limit: only the unregistered host's row moves.
    assert ids(await store.outbox_adopt("live-1", 3600)) == ["e3"]
    assert isinstance(store, SqlStore)
    await store.backend.run("UPDATE hosts SET last_heartbeat = last_heartbeat - 600 WHERE name = 'dead'")
    others = await open_stores(2)
    # "dead" has been silent for 10 minutes; the live hosts just registered. Two adopters race.
    got = await asyncio.gather(others[0].outbox_adopt("live-1", 60), others[1].outbox_adopt("live-2", 60))
    assert sorted(ids(got[0]) + ids(got[1])) == ["e1", "e2"]
    assert all(ids(rows) in ([], ["e1", "e2"]) for rows in got)  # one UPDATE: all or nothing each
    assert await store.outbox_rows("dead") == []
    assert sorted(ids(await store.outbox_rows("live-1")) + ids(await store.outbox_rows("live-2"))) == [
        "e1", "e2", "e3", "e4"]


def messages_of(job: JobRecord) -> list[OutboxMessage]:
    """What the node stores for a requeued or retried job: its event, then its request."""
    return [jobs_pb2.JobEvent(event_id=f"ev-{job.job_id}-{job.attempt}", job_id=job.job_id, attempt=job.attempt,
                              state=job.state.to_proto()),
            OutboxRequest(f"rq-{job.job_id}-{job.attempt}", job.request, priority=1)]


def described(rows: list[tuple[int, OutboxMessage]]) -> list[tuple[str, str]]:
    return [("request", m.message_id) if isinstance(m, OutboxRequest) else ("event", m.event_id) for _, m in rows]


async def test_job_requests_share_the_outbox_in_order_with_their_priority(store: Store) -> None:
    request = jobs_pb2.JobRequest(job_id="j1", runs_on="illumos", run_id="r")
    await store.outbox_add("host-a", [event(1), OutboxRequest("rq1", request, priority=1), event(2)])
    rows = await store.outbox_rows("host-a")
    assert described(rows) == [("event", "e1"), ("request", "rq1"), ("event", "e2")]
    stored = rows[1][1]
    assert isinstance(stored, OutboxRequest) and stored.request == request and stored.priority == 1
    await store.outbox_delete(["rq1"])
    assert described(await store.outbox_rows("host-a")) == [("event", "e1"), ("event", "e2")]


async def test_a_requeue_stores_its_announcement_in_the_same_transaction(store: Store) -> None:
    await store.register_host("host-a", ["illumos"], capacity=4)
    await drive(store, "p", JobState.PROVISIONING, host="host-a")
    await drive(store, "r", JobState.RUNNING, host="host-a")
    [changed] = await store.requeue_host("host-a", max_attempts=3, announce=Announce("host-b", messages_of),
                                         keep={"p"})
    assert (changed.job_id, changed.state, changed.attempt) == ("r", JobState.QUEUED, 2)
    assert (await store.get_job("p")).state is JobState.PROVISIONING  # type: ignore[union-attr]  # kept
    assert described(await store.outbox_rows("host-b")) == [("event", "ev-r-2"), ("request", "rq-r-2")]

    def broken(job: JobRecord) -> list[OutboxMessage]:
        raise RuntimeError("the announcement cannot be built")

    with pytest.raises(RuntimeError):  # nothing of the change stays without its announcement
        await store.requeue_host("host-a", max_attempts=3, announce=Announce("host-b", broken))
    assert (await store.get_job("p")).attempt == 1  # type: ignore[union-attr]


async def test_a_retry_stores_its_announcement_in_the_same_transaction(store: Store) -> None:
    await drive(store, "f", JobState.FAILED)
    retried = await store.retry("f", announce=Announce("host-a", messages_of))
    assert (retried.state, retried.attempt) == (JobState.QUEUED, 2)
    assert described(await store.outbox_rows("host-a")) == [("event", "ev-f-2"), ("request", "rq-f-2")]
    with pytest.raises(RetryNotAllowed):
        await store.retry("f", announce=Announce("host-a", messages_of))
    assert len(await store.outbox_rows("host-a")) == 2  # a refused retry stores nothing
