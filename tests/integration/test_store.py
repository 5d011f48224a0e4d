"""The SeenStore contract, run against both back-ends (SQLite file, PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration.errors import StoreError
from integration.store import (
    BuildStart,
    DeferredBuild,
    PostgresSeenStore,
    ReportRecord,
    SeenStore,
    SqliteSeenStore,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "seen.sqlite")
    return request.getfixturevalue("pg_database")


@pytest.fixture
async def store(store_spec: str) -> AsyncIterator[SeenStore]:
    made = open_store(store_spec)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


def test_open_store_picks_the_back_end(tmp_path: Path):
    assert isinstance(open_store(str(tmp_path / "x.sqlite")), SqliteSeenStore)
    assert isinstance(open_store("postgresql://u@h/db"), PostgresSeenStore)
    assert isinstance(open_store("postgres://u@h/db"), PostgresSeenStore)


async def test_claim_is_granted_once(store: SeenStore):
    assert await store.claim("delivery", "github:1", ttl=60) is True
    assert await store.claim("delivery", "github:1", ttl=60) is False
    assert await store.claim("build", "github:1", ttl=60) is True  # kinds are separate
    assert await store.claim("delivery", "github:2", ttl=60) is True


async def test_concurrent_claims_have_one_winner(store: SeenStore):
    results = await asyncio.gather(*[store.claim("delivery", "race", ttl=60) for _ in range(20)])
    assert results.count(True) == 1


async def test_released_claim_can_be_taken_again(store: SeenStore):
    assert await store.claim("delivery", "d", ttl=60)
    await store.release("delivery", "d")
    assert await store.claim("delivery", "d", ttl=60)


async def test_expired_claims_are_taken_over_and_purged(store: SeenStore):
    assert await store.claim("delivery", "short", ttl=0.05)
    assert await store.claim("delivery", "long", ttl=3600)
    deadline = time.time() + 0.05
    while time.time() <= deadline:  # let the short claim expire (a deadline on the store's own clock)
        await asyncio.sleep(0.01)
    assert await store.purge_expired() == 1
    assert await store.claim("delivery", "long", ttl=3600) is False
    assert await store.claim("delivery", "short", ttl=3600) is True


async def test_report_records_round_trip(store: SeenStore):
    assert await store.get_report("job-1", 1) is None
    first = ReportRecord("job-1", 1, "github", "1001", 1, 100.0)
    await store.save_report(first)
    assert await store.get_report("job-1", 1) == first
    later = ReportRecord("job-1", 1, "github", "1001", 4, 200.0)
    await store.save_report(later)
    assert await store.get_report("job-1", 1) == later
    assert await store.get_report("job-1", 2) is None


async def test_a_report_record_never_goes_backwards(store: SeenStore):
    done = ReportRecord("job-1", 1, "github", "1001", 4, 200.0)
    await store.save_report(done)
    await store.save_report(ReportRecord("job-1", 1, "github", "1001", 3, 300.0))  # a slow replica's in_progress
    await store.save_report(ReportRecord("job-1", 1, "github", "1002", 4, 400.0))  # the same rank again
    assert await store.get_report("job-1", 1) == done


async def test_the_report_lock_has_one_holder_until_its_lease_ends(store: SeenStore):
    now = time.time()
    assert await store.lock_report("job-1", "replica-a", now + 60)
    assert not await store.lock_report("job-1", "replica-b", now + 60)
    assert await store.lock_report("job-1", "replica-a", now + 120)  # renewed by its holder
    assert await store.lock_report("job-2", "replica-b", now + 60)  # per job
    await store.unlock_report("job-1", "replica-b")  # not the holder: nothing
    assert not await store.lock_report("job-1", "replica-b", now + 60)
    await store.unlock_report("job-1", "replica-a")
    assert await store.lock_report("job-1", "replica-b", now + 0.05)
    deadline = time.time() + 0.05
    while time.time() <= deadline:  # a holder that died: its lease ends
        await asyncio.sleep(0.01)
    assert await store.lock_report("job-1", "replica-a", now + 60)
    results = await asyncio.gather(*[store.lock_report("job-3", f"r{i}", now + 60) for i in range(10)])
    assert results.count(True) == 1


async def test_start_build_claims_and_keeps_the_build_in_one_step(store: SeenStore):
    now = time.time()
    started = await store.start_build("github:d1", "b1", '{"n": 1}', ttl=3600, lease_until=now + 30)
    assert started is BuildStart.STARTED
    assert await store.start_build("github:d1", "b1", "{}", 3600, now + 30) is BuildStart.DUPLICATE_DELIVERY
    assert await store.start_build("github:d2", "b1", "{}", 3600, now + 30) is BuildStart.DUPLICATE_BUILD
    assert await store.claim("delivery", "github:d2", 60) is False  # the second delivery was recorded
    assert await store.take_due(now, lease=60, limit=10) == []  # leased to whoever is building it
    # ... and due when that lease ends (its builder died): anyone finishes it
    [due] = await store.take_due(now + 31, lease=60, limit=10)
    assert (due.key, due.doc, due.attempts) == ("b1", '{"n": 1}', 0)
    await store.abandon_build("github:d1", "b1")
    assert await store.take_due(now + 3600, lease=60, limit=10) == []
    assert await store.claim("delivery", "github:d1", 60) and await store.claim("build", "b1", 60)


async def test_concurrent_starts_of_one_build_have_one_winner(store: SeenStore):
    now = time.time()
    results = await asyncio.gather(*[store.start_build(f"github:d{i}", "same", "{}", 3600, now + 30)
                                     for i in range(10)])
    assert results.count(BuildStart.STARTED) == 1
    assert results.count(BuildStart.DUPLICATE_BUILD) == 9


async def start(store: SeenStore, key: str, doc: str, due: float) -> None:
    assert await store.start_build(f"delivery-of-{key}", key, doc, 3600, due) is BuildStart.STARTED


async def test_deferred_builds_are_leased_rescheduled_and_forgotten(store: SeenStore):
    now = time.time()
    await start(store, "b1", '{"n": 1}', now - 10)
    await start(store, "b2", '{"n": 2}', now + 3600)
    [due] = await store.take_due(now, lease=60, limit=10)
    assert (due.key, due.doc, due.attempts, due.last_error) == ("b1", '{"n": 1}', 0, "in progress")
    assert due.next_at == pytest.approx(now + 60)
    assert await store.take_due(now, lease=60, limit=10) == []  # leased: nobody else takes it
    await store.reschedule("b1", 1, now - 1, "still down")
    [again] = await store.take_due(now, lease=60, limit=10)
    assert (again.attempts, again.last_error) == (1, "still down")
    await store.forget_deferred("b1")
    assert await store.take_due(now + 7200, lease=60, limit=10) == [
        DeferredBuild("b2", '{"n": 2}', 0, pytest.approx(now, abs=5), pytest.approx(now + 7260), "in progress")  # type: ignore[arg-type]
    ]


async def test_concurrent_takers_never_share_a_deferred_build(store: SeenStore):
    now = time.time()
    for i in range(20):
        await start(store, f"b{i}", "{}", now - 1)
    batches = await asyncio.gather(*[store.take_due(now, lease=60, limit=3) for _ in range(10)])
    taken = [d.key for batch in batches for d in batch]
    assert len(taken) == len(set(taken)) == 20


async def test_claims_and_reports_survive_a_restart(store_spec: str):
    first = open_store(store_spec)
    await first.open()
    await first.claim("delivery", "kept", ttl=3600)
    await first.save_report(ReportRecord("job-9", 1, "forgejo", "", 3, 1.0))
    await first.close()
    second = open_store(store_spec)
    await second.open()  # applying the schema again is harmless
    try:
        assert await second.claim("delivery", "kept", ttl=3600) is False
        assert (await second.get_report("job-9", 1)).rank == 3  # type: ignore[union-attr]
    finally:
        await second.close()


async def test_unusable_store_is_a_clear_error(tmp_path: Path):
    (tmp_path / "dir.sqlite").mkdir()
    def workers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name and t.is_alive()}

    before = workers()
    with pytest.raises(StoreError, match="cannot open the integration store"):
        await SqliteSeenStore(tmp_path / "dir.sqlite").open()
    # The failed connect's worker thread has ended (else it dies later with "Event loop is closed").
    assert workers() - before == set()
    with pytest.raises(StoreError, match="PostgreSQL"):
        await PostgresSeenStore("postgresql://postgres@127.0.0.1:1/nowhere").open()
    with pytest.raises(StoreError, match="not open"):
        await SqliteSeenStore(tmp_path / "never.sqlite").claim("delivery", "x", 1)


async def test_maintain_purges_expired_claims(tmp_path: Path, app_key, fixtures_dir):
    from common.queue import RabbitJobPublisher
    from integration.runtime import Integration
    from integration.settings import IntegrationSettings
    from tests.waiting import async_wait_until

    path = tmp_path / "purge.sqlite"
    settings = IntegrationSettings(store=str(path))
    integration = Integration(settings, RabbitJobPublisher("amqp://unused/"))  # never started: no publish here
    await integration.start()
    try:
        await integration.store.claim("delivery", "old", ttl=0.01)
        await integration.store.claim("delivery", "new", ttl=3600)
        task = asyncio.create_task(integration.maintain(interval=0.02), name="maintain")
        try:
            async def remaining() -> int:
                async with integration.store.db.execute("SELECT count(*) FROM integration_claims") as cursor:  # type: ignore[attr-defined]
                    return (await cursor.fetchone())[0]

            await async_wait_until(lambda: _is(remaining(), 1), what="the expired claim to be purged")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await integration.close()


async def _is(value, expected) -> bool:
    return (await value) == expected
