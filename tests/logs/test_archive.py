"""The log archive's contract - on SQLite, on PostgreSQL (the cluster's default) and with the
chunks in S3-compatible storage (moto's S3 server, over real HTTP: no S3 server installs
here; tests/logs/s3.py) - and the ``Archiver`` shipping a node's real log files into it
while they grow and once they end."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.rpc import admin_pb2, runner_pb2
from orchestrator.logstore import LogStore
from orchestrator.logstore.archive import ArchiveError, Chunk, LogArchive
from orchestrator.logstore.archiver import Archiver
from orchestrator.logstore.pages import join_payloads
from orchestrator.logstore.s3 import S3Objects
from orchestrator.logstore.sqlarchive import SqlLogArchive
from orchestrator.store import Store, open_store
from tests.logs.pages import lines_of
from tests.logs.s3 import object_keys, s3_config


def page(first: int, *lines: bytes) -> bytes:
    batch = runner_pb2.LogBatch(first_sequence=first, runs=[admin_pb2.LogRun(
        step=0, stream=admin_pb2.LOG_STREAM_STDOUT, at=1.0, lines=len(lines), data=b"\n".join(lines))])
    return batch.SerializeToString()


def chunk(first: int, last: int) -> Chunk:
    return Chunk(first, last, page(first, *(b"line %d" % n for n in range(first, last + 1))))


@pytest.fixture(params=["sqlite", "postgres", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_database")
    return f"sqlite://{tmp_path}/state.db"  # s3: the index in SQLite, the chunks in the bucket


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url, pool_size=2) as opened:
        yield opened


@pytest.fixture
async def archive(request: pytest.FixtureRequest, store: Store, tmp_path: Path) -> AsyncIterator[LogArchive]:
    objects = None
    if request.node.callspec.params["store_url"] == "s3":
        objects = await S3Objects.open(s3_config(request.getfixturevalue("s3_bucket"), tmp_path))
    archive = SqlLogArchive(store.backend, objects)  # type: ignore[attr-defined]
    try:
        yield archive
    finally:
        await archive.close()


async def read_all(archive: LogArchive, job_id: str, attempt: int, start: int = 1) -> list[bytes]:
    out: list[bytes] = []
    while True:
        chunks = await archive.chunks(job_id, attempt, start)
        if not chunks:
            return out
        for one in chunks:
            lines = lines_of([admin_pb2.LogPage.FromString(one.page)])
            out.extend(ln.content for ln in lines if ln.sequence >= start)
            start = one.last_sequence + 1


async def test_chunks_continue_exactly_and_read_from_any_line(archive: LogArchive) -> None:
    assert await archive.state("job-1", 1) is None
    assert await archive.append("job-1", 1, "node-a", chunk(1, 10))
    assert not await archive.append("job-1", 1, "node-a", chunk(1, 10))  # again: refused, not doubled
    assert not await archive.append("job-1", 1, "node-a", chunk(12, 20))  # a gap: refused
    assert not await archive.append("job-1", 1, "node-a", chunk(5, 20))  # an overlap: refused
    for first in range(11, 100, 10):
        assert await archive.append("job-1", 1, "node-a", chunk(first, first + 9))
    state = await archive.state("job-1", 1)
    assert state is not None and (state.lines, state.host, state.complete) == (100, "node-a", False)
    assert state.stored_bytes > 0
    assert await read_all(archive, "job-1", 1) == [b"line %d" % n for n in range(1, 101)]
    assert await read_all(archive, "job-1", 1, 57) == [b"line %d" % n for n in range(57, 101)]
    assert await read_all(archive, "job-1", 1, 101) == []
    assert await read_all(archive, "job-1", 2) == []  # attempts are apart

    assert [a.job_id for a in await archive.incomplete("node-a")] == ["job-1"]
    assert not await archive.complete("job-1", 1, "node-a", 99)  # fewer lines than it says: refused
    assert await archive.complete("job-1", 1, "node-a", 100)
    assert not await archive.append("job-1", 1, "node-a", chunk(101, 110))  # complete: nothing more
    assert await archive.incomplete("node-a") == []
    assert await archive.complete("job-2", 1, "node-b", 0)  # an attempt that logged nothing
    assert (await archive.state("job-2", 1)).complete  # type: ignore[union-attr]


async def test_delete_takes_every_attempt_of_the_jobs_named_and_nothing_else(archive: LogArchive) -> None:
    for job_id in ("old", "young"):
        for attempt in (1, 2):
            assert await archive.append(job_id, attempt, "node-a", chunk(1, 5))
    expired = await archive.expired(["old"])
    assert sorted((e.job_id, e.attempt) for e in expired) == [("old", 1), ("old", 2)]
    assert await archive.delete(["old"]) == 2
    assert await archive.state("old", 1) is None and await read_all(archive, "old", 2) == []
    assert await read_all(archive, "young", 2) == [b"line %d" % n for n in range(1, 6)]


async def test_a_damaged_chunk_is_an_error_not_a_short_log(archive: LogArchive, store: Store) -> None:
    assert await archive.append("job-1", 1, "node-a", chunk(1, 3))
    if isinstance(archive, SqlLogArchive) and archive.objects is not None:
        [row] = await store.backend.run("SELECT object_key FROM log_chunks")  # type: ignore[attr-defined]
        await archive.objects.put(row["object_key"], b"not zstd")
    else:
        await store.backend.run("UPDATE log_chunks SET data = $1", b"not zstd")  # type: ignore[attr-defined]
    with pytest.raises(ArchiveError, match="damaged"):
        await archive.chunks("job-1", 1, 1)


async def _log_lines(joblog, first: int, last: int) -> None:  # type: ignore[no-untyped-def]
    batch = runner_pb2.LogBatch(first_sequence=first)
    batch.runs.add(step=0, stream=admin_pb2.LOG_STREAM_STDOUT, at=time.time(), lines=last - first + 1,
                   data=b"\n".join(b"%d" % n for n in range(first, last + 1)))
    await joblog.append(batch)


@contextlib.asynccontextmanager
async def logstore(path: Path) -> AsyncIterator[LogStore]:
    async with LogStore(path) as logs:
        yield logs


async def test_the_archiver_ships_a_growing_log_and_completes_it_once_closed(archive: LogArchive,
                                                                              tmp_path: Path) -> None:
    async with logstore(tmp_path / "logs") as logs:
        archiver = Archiver(logs, archive, "node-a", interval=60.0)
        joblog = await logs.open("job-1", 1, ["s3cr3t-value"])
        await _log_lines(joblog, 1, 50_000)
        assert not await archiver.ship("job-1", 1, final=False)  # running: shipped, not complete
        state = await archive.state("job-1", 1)
        assert state is not None and state.lines == 50_000 and not state.complete
        assert not await archiver.ship("job-1", 1, final=False)  # nothing new: nothing shipped
        await _log_lines(joblog, 50_001, 120_000)
        batch = runner_pb2.LogBatch(first_sequence=120_001)
        batch.runs.add(step=0, stream=admin_pb2.LOG_STREAM_STDOUT, at=1.0, lines=1, data=b"token s3cr3t-value")
        await joblog.append(batch)
        await joblog.close()
        assert await archiver.ship("job-1", 1, final=True)
        state = await archive.state("job-1", 1)
        assert state is not None and state.lines == 120_001 and state.complete
        got = await read_all(archive, "job-1", 1)
        assert got[:-1] == [b"%d" % n for n in range(1, 120_001)]
        assert got[-1] == b"token ***"  # masked before it was stored, so in the archive too
        # an attempt that ended without a line: complete and empty
        assert await archiver.ship("job-2", 1, final=True)
        assert (await archive.state("job-2", 1)).complete  # type: ignore[union-attr]


async def test_a_restarted_node_ships_what_its_previous_process_left(archive: LogArchive, tmp_path: Path) -> None:
    async with logstore(tmp_path / "logs") as logs:
        joblog = await logs.open("job-1", 1)
        await _log_lines(joblog, 1, 1000)
        assert not await Archiver(logs, archive, "node-a").ship("job-1", 1, final=False)
        await _log_lines(joblog, 1001, 2000)
        await joblog.close()  # ...and the process died before shipping the rest
    async with logstore(tmp_path / "logs") as logs:
        assert await Archiver(logs, archive, "node-a").recover() == 1
    state = await archive.state("job-1", 1)
    assert state is not None and state.complete and state.lines == 2000
    assert await read_all(archive, "job-1", 1) == [b"%d" % n for n in range(1, 2001)]


def test_join_payloads_is_one_page_of_consecutive_batches() -> None:
    joined = admin_pb2.LogPage.FromString(join_payloads(7, [page(7, b"a", b"b"), page(9, b"c")]))
    assert joined.first_sequence == 7
    assert [(ln.sequence, ln.content) for ln in lines_of([joined])] == [(7, b"a"), (8, b"b"), (9, b"c")]


async def test_with_s3_the_bytes_are_in_the_bucket_and_only_the_index_in_the_database(
        store: Store, s3_bucket, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = SqlLogArchive(store.backend, await S3Objects.open(s3_config(s3_bucket, tmp_path)))  # type: ignore[attr-defined]
    try:
        assert await archive.append("job-1", 1, "node-a", chunk(1, 10))
        assert await archive.append("job-1", 1, "node-a", chunk(11, 20))
        rows = await store.backend.run("SELECT data, object_key FROM log_chunks ORDER BY first_sequence")  # type: ignore[attr-defined]
        assert [row["data"] for row in rows] == [None, None]
        keys = object_keys(s3_bucket)
        assert keys == ["logs/" + row["object_key"] for row in rows]
        assert keys[0].startswith("logs/job-1/1/000000000001-000000000010-")
        assert not await archive.append("job-1", 1, "node-a", chunk(1, 10))  # a resend: refused,
        assert object_keys(s3_bucket) == keys  # and the first copy kept
        assert await read_all(archive, "job-1", 1, 15) == [b"line %d" % n for n in range(15, 21)]
        assert not await archive.append("job-1", 1, "node-a", chunk(5, 25))  # refused: its object goes too
        assert len(object_keys(s3_bucket)) == 2
        assert await archive.delete(["job-1"]) == 1
        assert object_keys(s3_bucket) == []
    finally:
        await archive.close()


async def test_a_bucket_that_is_not_there_is_one_clear_error(s3_bucket, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = s3_config(s3_bucket, tmp_path)
    with pytest.raises(ArchiveError, match="cannot use the S3 bucket 'no-such-bucket'"):
        await S3Objects.open(dataclasses.replace(config, bucket="no-such-bucket"))
