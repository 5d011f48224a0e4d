"""The forward-only state machine: every pair of states, ignored moves counted, and a random walk."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.store import IgnoreReason, JobState, RetryNotAllowed, Store
from tests.store.conftest import drive, job

Q, P, R = JobState.QUEUED, JobState.PROVISIONING, JobState.RUNNING
ENDS = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ERRORED}
# Written out by hand (not derived from the code under test): what may follow what.
ALLOWED = {Q: {P, R} | ENDS, P: {R} | ENDS, R: set(ENDS), **{end: set() for end in ENDS}}


def expected_reason(current: JobState, to: JobState) -> IgnoreReason:
    if current == to:
        return IgnoreReason.DUPLICATE
    if current in ENDS:
        return IgnoreReason.LATE
    return IgnoreReason.BACKWARDS


async def test_every_pair_of_states(store: Store) -> None:
    ignored: dict[IgnoreReason, int] = {}
    for n, (current, to) in enumerate(itertools.product(JobState, JobState)):
        job_id = f"pair-{n}"
        await drive(store, job_id, current)
        applied = await store.transition(job_id, 1, to, reason="why")
        record = await store.get_job(job_id)
        assert record is not None
        if to in ALLOWED[current]:
            assert applied, f"{current.name} -> {to.name} should apply"
            assert record.state is to and record.reason == "why"
            assert (await store.attempts(job_id))[0].state is to
        else:
            assert not applied, f"{current.name} -> {to.name} should be ignored"
            assert record.state is current
            reason = expected_reason(current, to)
            ignored[reason] = ignored.get(reason, 0) + 1
    assert dict(await store.ignored_transitions_by_reason()) == ignored
    assert await store.ignored_transitions() == sum(ignored.values())


async def test_cancel_is_allowed_from_every_unfinished_state(store: Store) -> None:
    for state in (Q, P, R):
        await drive(store, f"c-{state.name}", state)
        assert await store.transition(f"c-{state.name}", 1, JobState.CANCELLED)


async def test_stale_attempts_and_unknown_jobs_are_counted(store: Store) -> None:
    await drive(store, "j1", JobState.FAILED)
    await store.retry("j1")
    assert not await store.transition("j1", 1, JobState.SUCCEEDED)  # the old attempt reports late
    assert not await store.transition("j1", 3, JobState.RUNNING)  # an attempt that never existed
    assert not await store.transition("ghost", 1, JobState.RUNNING)
    assert not await store.transition("j1", 2, JobState.QUEUED)  # duplicate of the new attempt's state
    assert dict(await store.ignored_transitions_by_reason()) == {
        IgnoreReason.STALE_ATTEMPT: 2, IgnoreReason.UNKNOWN_JOB: 1, IgnoreReason.DUPLICATE: 1}
    assert await store.ignored_transitions() == 4
    record = await store.get_job("j1")
    assert record is not None and (record.state, record.attempt) == (JobState.QUEUED, 2)


async def test_duplicate_terminal_events_do_not_change_the_outcome(store: Store) -> None:
    await drive(store, "j1", JobState.RUNNING)
    assert await store.transition("j1", 1, JobState.SUCCEEDED, reason="")
    assert not await store.transition("j1", 1, JobState.SUCCEEDED)
    assert not await store.transition("j1", 1, JobState.FAILED, reason="late failure")
    record = await store.get_job("j1")
    assert record is not None and (record.state, record.reason) == (JobState.SUCCEEDED, "")
    assert dict(await store.ignored_transitions_by_reason()) == {IgnoreReason.DUPLICATE: 1, IgnoreReason.LATE: 1}


# -- a random walk against a model ----------------------------------------

@dataclass
class Model:
    state: JobState = JobState.QUEUED
    attempt: int = 1
    host: str = ""
    ignored: dict[IgnoreReason, int] = field(default_factory=dict)


operation = st.one_of(
    st.tuples(st.just("transition"), st.sampled_from(list(JobState)), st.integers(1, 3)),
    st.tuples(st.just("claim"), st.sampled_from(["a", "b"]), st.integers(1, 3)),
    st.tuples(st.just("retry"), st.none(), st.none()),
    st.tuples(st.just("cancel"), st.none(), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=1, max_size=12))
async def test_random_walk_matches_the_model(store: Store, ops: list) -> None:
    job_id = f"walk-{uuid.uuid4().hex}"
    before = dict(await store.ignored_transitions_by_reason())
    await store.submit(job(job_id))
    model = Model()
    for kind, arg, attempt in ops:
        if kind == "transition":
            applied = await store.transition(job_id, attempt, arg)
            should = attempt == model.attempt and arg in ALLOWED[model.state]
            assert applied == should, (kind, arg, attempt, model)
            if should:
                model.state = arg
            else:
                why = IgnoreReason.STALE_ATTEMPT if attempt != model.attempt else expected_reason(model.state, arg)
                model.ignored[why] = model.ignored.get(why, 0) + 1
        elif kind == "claim":
            won = await store.claim(job_id, attempt, arg, "vm")
            fresh = attempt == model.attempt and model.state is Q
            redelivery = attempt == model.attempt and model.host == arg and model.state in (P, R)
            assert won == (fresh or redelivery), (kind, arg, attempt, model)
            if fresh:
                model.state, model.host = P, arg
        elif kind == "cancel":
            record = await store.cancel(job_id, reason="stop")
            if model.state not in ENDS:
                model.state = JobState.CANCELLED
            assert (record.state, record.attempt) == (model.state, model.attempt)
        else:
            try:
                await store.retry(job_id)
                assert model.state in ENDS
                model.state, model.attempt, model.host = Q, model.attempt + 1, ""
            except RetryNotAllowed:
                assert model.state not in ENDS
    record = await store.get_job(job_id)
    assert record is not None
    assert (record.state, record.attempt, record.host) == (model.state, model.attempt, model.host)
    assert len(await store.attempts(job_id)) == model.attempt
    after = await store.ignored_transitions_by_reason()
    for reason in IgnoreReason:
        assert after.get(reason, 0) - before.get(reason, 0) == model.ignored.get(reason, 0), reason
