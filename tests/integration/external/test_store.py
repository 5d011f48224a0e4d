"""The ExternalStore contract on both back-ends: dispatch dedupe and leases, health, buckets, results, checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration.external.allowlist import RepoKey
from integration.external.levels import Level
from integration.external.records import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    SENT,
    CachedAllowlist,
    DispatchRecord,
    ResultKey,
    ResultRecord,
    ResultReport,
    SuiteSummary,
    Trusted,
    UpstreamCheck,
)
from integration.external.store import ExternalStore, open_external_store

UP = RepoKey.parse("octo-org/octo-repo")
DOWN = RepoKey.parse("acme/xpu-ci")
SHA = "a" * 40


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "x.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_database")


@pytest.fixture
async def store(store_spec: str) -> AsyncIterator[ExternalStore]:
    made = open_external_store(store_spec)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


def dispatch(delivery: str = "github:d1", downstream: RepoKey = DOWN, created: float = 100.0) -> DispatchRecord:
    return DispatchRecord(f"dsp-{delivery}-{downstream}", delivery, downstream, UP, 7, SHA, "refs/pull/1/head", 1,
                          "pull_request", "opened", Level.L2, "{}", next_at=created, created_at=created)


def result(status: str = IN_PROGRESS, attempt: int = 1, seen: float = 200.0) -> ResultRecord:
    key = ResultKey(DOWN, "github:d1", "900", attempt, "test")
    trusted = Trusted(DOWN, Level.L2, "dsp-1", UP, SHA, 1, 7, 100.0, 110.0)
    report = ResultReport("d1", UP.name, SHA, "900", attempt, "test", "Test", status, upstream_pr=1,
                          conclusion="success" if status == COMPLETED else None,
                          tests=SuiteSummary(3, 0, 1, 0) if status == COMPLETED else None)
    return ResultRecord(key, trusted, status, report.conclusion, seen, seen if status == COMPLETED else None, seen,
                        report)


async def test_a_dispatch_is_recorded_once_per_delivery_and_downstream(store: ExternalStore):
    other = RepoKey.parse("acme/npu-ci")
    first = await store.record_dispatches([dispatch(), dispatch(downstream=other)], expires_at=10_000)
    assert len(first) == 2
    again = await store.record_dispatches([dispatch(), dispatch(delivery="github:d2")], expires_at=10_000)
    assert [d.delivery for d in again] == ["github:d2"]  # the replay added nothing
    found = await store.find_dispatch("github:d1", DOWN)
    assert found == dispatch()
    assert await store.find_dispatch("github:d1", RepoKey.parse("acme/other")) is None
    assert [d.downstream for d in await store.dispatches_of(UP, sha=SHA)] == [other, DOWN, DOWN]


async def test_due_dispatches_are_leased_to_one_taker(store: ExternalStore):
    await store.record_dispatches([dispatch(delivery=f"github:d{i}") for i in range(12)], expires_at=10_000)
    batches = await asyncio.gather(*[store.take_due_dispatches(150.0, lease=60, limit=5) for _ in range(4)])
    taken = [d.id for batch in batches for d in batch]
    assert len(taken) == len(set(taken)) == 12
    assert await store.take_due_dispatches(150.0, lease=60, limit=5) == []


async def test_dispatch_states_move_once(store: ExternalStore):
    await store.record_dispatches([dispatch(), dispatch(delivery="github:d2")], expires_at=10_000)
    await store.dispatch_retry("dsp-github:d1-github:acme/xpu-ci", 1, 500.0, "HTTP 502")
    retried = await store.find_dispatch("github:d1", DOWN)
    assert (retried.state, retried.attempts, retried.next_at, retried.last_error) == (PENDING, 1, 500.0, "HTTP 502")
    await store.dispatch_sent(retried.id, 510.0)
    await store.dispatch_finished(retried.id, FAILED, 2, 520.0, "late")  # sent stays sent
    sent = await store.find_dispatch("github:d1", DOWN)
    assert (sent.state, sent.sent_at, sent.last_error) == (SENT, 510.0, "")
    await store.dispatch_finished("dsp-github:d2-github:acme/xpu-ci", FAILED, 6, 530.0, "gave up")
    failed = await store.find_dispatch("github:d2", DOWN)
    assert (failed.state, failed.attempts, failed.finished_at) == (FAILED, 6, 530.0)


async def test_health_turns_unhealthy_after_failures_in_a_row_and_back(store: ExternalStore):
    assert (await store.health(DOWN)).healthy
    for at in (1.0, 2.0):
        assert (await store.note_dispatch(DOWN, False, at, "HTTP 502", unhealthy_after=3)).healthy
    third = await store.note_dispatch(DOWN, False, 3.0, "HTTP 503", unhealthy_after=3)
    assert (third.failures, third.unhealthy_since, third.last_error) == (3, 3.0, "HTTP 503")
    fourth = await store.note_dispatch(DOWN, False, 4.0, "HTTP 503", unhealthy_after=3)
    assert fourth.unhealthy_since == 3.0  # since the first time it crossed the line
    back = await store.note_dispatch(DOWN, True, 5.0, "", unhealthy_after=3)
    assert back.healthy and back.failures == 0 and back.last_success_at == 5.0
    assert [h.downstream for h in await store.all_health()] == [DOWN]


async def test_token_bucket_grants_burst_then_refills_at_the_rate(store: ExternalStore):
    granted = [await store.take_token("acme/xpu-ci", 1000.0, per_second=1.0, burst=3) for _ in range(3)]
    assert granted == [0.0, 0.0, 0.0]
    wait = await store.take_token("acme/xpu-ci", 1000.0, per_second=1.0, burst=3)
    assert wait == pytest.approx(1.0)
    assert await store.take_token("acme/xpu-ci", 1000.5, per_second=1.0, burst=3) == pytest.approx(0.5)
    assert await store.take_token("acme/xpu-ci", 1001.0, per_second=1.0, burst=3) == 0.0
    assert await store.take_token("acme/other", 1000.0, per_second=1.0, burst=3) == 0.0  # buckets are per repo
    # A long pause refills to the burst, not beyond.
    assert [await store.take_token("acme/xpu-ci", 5000.0, 1.0, 3) for _ in range(4)][-1] > 0


async def test_concurrent_takers_never_get_more_than_the_burst(store: ExternalStore):
    answers = await asyncio.gather(*[store.take_token("acme/race", 1000.0, 0.001, 5) for _ in range(20)])
    assert answers.count(0.0) == 5


async def test_results_insert_once_and_complete_once(store: ExternalStore):
    first = result()
    assert await store.insert_result(first, expires_at=10_000)
    assert not await store.insert_result(result(seen=300.0), expires_at=10_000)
    assert await store.get_result(first.key) == first
    done = result(COMPLETED, seen=400.0)
    done = ResultRecord(done.key, done.trusted, COMPLETED, "success", first.first_seen_at, 400.0, 400.0, done.report)
    assert await store.complete_result(done)
    assert not await store.complete_result(done)  # only over in_progress
    stored = await store.get_result(first.key)
    assert stored == done and stored.report.tests == SuiteSummary(3, 0, 1, 0)
    assert await store.count_results(DOWN) == 1
    assert [r.key for r in await store.results_of_upstream(UP, pr_number=1)] == [first.key]
    assert [r.key for r in await store.results_of_commits(UP, [SHA, "b" * 40])] == [first.key]
    assert await store.results_of_upstream(UP, sha="b" * 40) == []
    assert [r.key for r in await store.results_of_downstream(DOWN, since=0, limit=10)] == [first.key]
    assert await store.downstream_totals(since=0) == [(DOWN, 1, 1, 400.0)]


async def test_upstream_checks_only_move_up_and_are_leased(store: ExternalStore):
    want = UpstreamCheck("k1", UP, SHA, 7, "external / acme/xpu-ci / test", wanted_rank=1, wanted='{"a":1}',
                         next_at=100.0)
    stored = await store.want_upstream_check(want, expires_at=10_000)
    assert (stored.shown_rank, stored.wanted_rank) == (0, 1)
    [due] = await store.take_due_upstream_checks(100.0, lease=30, limit=10)
    assert due.key == "k1"
    assert await store.take_due_upstream_checks(100.0, lease=30, limit=10) == []
    await store.upstream_check_shown("k1", "1001", 1)
    assert await store.take_due_upstream_checks(500.0, lease=30, limit=10) == []
    higher = await store.want_upstream_check(
        UpstreamCheck("k1", UP, SHA, 7, want.name, wanted_rank=2, wanted='{"b":2}', next_at=200.0), 10_000)
    assert (higher.external_id, higher.shown_rank, higher.wanted_rank, higher.wanted) == ("1001", 1, 2, '{"b":2}')
    lower = await store.want_upstream_check(
        UpstreamCheck("k1", UP, SHA, 7, want.name, wanted_rank=1, wanted='{"c":3}', next_at=200.0), 10_000)
    assert lower.wanted == '{"b":2}'


async def test_allowlist_cache_and_purge(store: ExternalStore):
    await store.save_allowlist(CachedAllowlist("file.yaml", "version: 1\n", "d1", 5.0))
    await store.save_allowlist(CachedAllowlist("file.yaml", "version: 1\nupstreams: {}\n", "d2", 6.0))
    kept = CachedAllowlist("file.yaml", "version: 1\nupstreams: {}\n", "d2", 6.0)
    assert await store.load_allowlist("file.yaml") == kept
    assert await store.load_allowlist("other") is None
    await store.record_dispatches([dispatch()], expires_at=1000.0)
    await store.insert_result(result(), expires_at=2000.0)
    assert await store.purge(1500.0) == 1
    assert await store.find_dispatch("github:d1", DOWN) is None
    assert await store.get_result(result().key) is not None
