"""Opening and closing: URLs, migrations (idempotent, concurrent, refused when newer), restart, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from orchestrator.store import (
    ConstraintViolation,
    IgnoreReason,
    InvalidStoreUrl,
    JobState,
    MigrationError,
    PostgresStore,
    SqliteStore,
    Store,
    StoreError,
    StoreUnavailable,
    migrate,
    open_store,
    store_for_url,
)
from orchestrator.store.sqlstore import SqlStore
from tests.store.conftest import drive
from tests.waiting import async_wait_until


def newest_version() -> int:
    return len(migrate.load("sqlite"))


async def versions(store: Store) -> list[int]:
    assert isinstance(store, SqlStore)
    return await migrate.applied_versions(store.backend)


async def test_migrations_apply_once(store: Store) -> None:
    assert await versions(store) == list(range(1, newest_version() + 1))
    assert isinstance(store, SqlStore)
    assert await migrate.apply(store.backend) == []  # applying again is a no-op
    assert await versions(store) == list(range(1, newest_version() + 1))


async def test_concurrent_openers_migrate_once(store_url: str) -> None:
    stores = [store_for_url(store_url, pool_size=1) for _ in range(5)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert await versions(stores[0]) == list(range(1, newest_version() + 1))
    finally:
        for store in stores:
            await store.close()


async def test_restart_keeps_everything(store_url: str) -> None:
    async with open_store(store_url) as store:
        await drive(store, "j1", JobState.RUNNING)
        await store.register_host("host-a", ["illumos"], capacity=2)
        await store.set_draining("host-a", True)
        assert not await store.transition("j1", 1, JobState.QUEUED)
        before = await store.get_job("j1")
    async with open_store(store_url) as store:
        assert await store.get_job("j1") == before
        assert await store.live_vm_names("host-a") == {"vm-j1"}
        [host] = await store.list_hosts()
        assert host.name == "host-a" and host.draining
        assert await store.ignored_transitions_by_reason() == {IgnoreReason.BACKWARDS: 1}
        assert await store.transition("j1", 1, JobState.SUCCEEDED)


async def test_a_newer_schema_is_refused(store: Store, store_url: str) -> None:
    assert isinstance(store, SqlStore)
    async with store.backend.transaction() as tx:
        await tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', {now})", 999)
    with pytest.raises(MigrationError, match="version 999, newer"):
        async with open_store(store_url):
            pass


async def test_a_store_opens_once(store_url: str) -> None:
    store = store_for_url(store_url)
    with pytest.raises(StoreError, match="unopened"):
        await store.get_job("j1")
    async with store:
        assert await store.get_job("j1") is None
    with pytest.raises(StoreError, match="closed"):
        await store.get_job("j1")
    with pytest.raises(StoreError, match="opens once"):
        await store.open()
    await store.close()  # idempotent


def test_urls_name_their_back_end(tmp_path: Path) -> None:
    absolute = store_for_url(f"sqlite://{tmp_path}/a.db")
    assert isinstance(absolute, SqliteStore) and absolute.backend.where == f"SQLite database {tmp_path}/a.db"
    relative = store_for_url("sqlite:state/b.db")
    assert isinstance(relative, SqliteStore) and relative.backend.where == "SQLite database state/b.db"
    assert store_for_url("sqlite::memory:").backend.where == "SQLite in memory"  # type: ignore[attr-defined]
    for url in ("postgresql://u@db.example:6543/ci", "postgres://u@db.example:6543/ci"):
        pg = store_for_url(url)
        assert isinstance(pg, PostgresStore) and pg.backend.where == "PostgreSQL at db.example:6543/ci"
    four_slashes = store_for_url(f"sqlite:///{tmp_path}/a.db")  # SQLAlchemy's spelling of an absolute path
    assert four_slashes.backend.where == absolute.backend.where  # type: ignore[attr-defined]
    for bad, message in [("mysql://x/y", "scheme 'mysql'"), ("sqlite:", "no database"),
                         ("sqlite://host/x.db", "sqlite:///absolute")]:
        with pytest.raises(InvalidStoreUrl, match=message):
            store_for_url(bad)


async def test_in_memory_sqlite_works() -> None:
    async with open_store("sqlite::memory:") as store:
        await drive(store, "j1", JobState.SUCCEEDED)
        assert (await store.get_job("j1")).state is JobState.SUCCEEDED  # type: ignore[union-attr]


async def test_unreachable_postgres_is_one_clear_error() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        async with open_store("postgresql://solstice:s3cret-pw@127.0.0.1:1/ci"):
            pass
    message = str(caught.value)
    assert message.startswith("cannot reach PostgreSQL at 127.0.0.1:1/ci: ")
    assert "s3cret-pw" not in message


async def test_missing_postgres_database_is_one_clear_error(pg_database: str) -> None:
    with pytest.raises(StoreUnavailable, match="cannot reach PostgreSQL at .*/no_such_db: .*no_such_db"):
        async with open_store(pg_database.rsplit("/", 1)[0] + "/no_such_db"):
            pass


async def test_missing_sqlite_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="directory .*/missing does not exist"):
        async with open_store(f"sqlite://{tmp_path}/missing/state.db"):
            pass


def test_both_dialects_have_the_same_migrations() -> None:
    sqlite = [(m.version, m.name) for m in migrate.load("sqlite")]
    postgres = [(m.version, m.name) for m in migrate.load("postgres")]
    assert sqlite == postgres and sqlite[0] == (1, "initial")


async def test_one_unfinished_attempt_per_job_is_enforced_by_the_schema(store: Store) -> None:
    await drive(store, "j1", JobState.RUNNING)
    assert isinstance(store, SqlStore)
    with pytest.raises(ConstraintViolation, match="refused a write"):
        await store.backend.run(
            "INSERT INTO attempts (job_id, attempt, host, state, reason, vm_name, queued_at, updated_at)"
            " VALUES ('j1', 2, '', 1, '', '', 0, 0)")
    assert [a.attempt for a in await store.attempts("j1")] == [1]


async def test_a_lost_postgres_connection_is_reported_then_recovered(pg_database: str) -> None:
    database = pg_database.rsplit("/", 1)[1]
    async with open_store(pg_database, pool_size=1) as store:
        await drive(store, "j1", JobState.RUNNING)
        admin = await asyncpg.connect(pg_database)
        try:
            # Hold the attempt's row lock so the store's UPDATE waits in the server, then cut its connection.
            locker = admin.transaction()
            await locker.start()
            await admin.execute("SELECT 1 FROM attempts WHERE job_id = 'j1' FOR UPDATE")
            finishing = asyncio.create_task(store.transition("j1", 1, JobState.SUCCEEDED))
            try:
                waiting = await async_wait_until(lambda: admin.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", database),
                    timeout=30, what="the store's UPDATE to wait for the row lock")
                await admin.execute("SELECT pg_terminate_backend($1)", waiting)
                lost = f"^lost the connection to PostgreSQL at 127.0.0.1:\\d+/{database}: "
                with pytest.raises(StoreUnavailable, match=lost):
                    await finishing
            finally:
                if not finishing.done():
                    finishing.cancel()
                await asyncio.wait([finishing])
            await locker.rollback()
        finally:
            await admin.close()
        # The pool replaces the dead connection: the next calls work and nothing was half-applied.
        record = await store.get_job("j1")
        assert record is not None and record.state is JobState.RUNNING
        assert await store.transition("j1", 1, JobState.SUCCEEDED)
