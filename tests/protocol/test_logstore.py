"""The log store: durable, deduplicated, masked, followable, recoverable."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from common.logbatch import STDERR, STDOUT, iter_lines
from common.rpc import runner_pb2
from orchestrator.logstore import LogClosed, LogGap, LogStore, frames
from orchestrator.logstore.store import WRITER_THREADS


def batch(first: int, lines: list[bytes], stream: int = STDOUT, step: int = 0, cont=()) -> runner_pb2.LogBatch:
    b = runner_pb2.LogBatch(first_sequence=first)
    b.runs.add(step=step, stream=stream, at=1000.0, lines=len(lines), data=b"\n".join(lines))
    b.continuations.extend(cont)
    return b


def numbered(first: int, n: int) -> list[bytes]:
    return [b"line %d" % i for i in range(first, first + n)]


async def test_append_dedupes_and_keeps_order(tmp_path):
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        assert await log.append(batch(1, numbered(1, 5))) == 5
        # a resend of stored lines is dropped, an overlapping one is trimmed
        assert await log.append(batch(1, numbered(1, 5))) == 5
        assert await log.append(batch(3, numbered(3, 6))) == 8
        with pytest.raises(LogGap) as gap:
            await log.append(batch(10, numbered(10, 1)))
        assert gap.value.stored == 8
        lines = await log.read_all()
    assert [ln.sequence for ln in lines] == list(range(1, 9))
    assert [ln.content for ln in lines] == numbered(1, 8)


async def test_multiple_runs_keep_stream_and_step(tmp_path):
    b = batch(1, [b"out1", b"out2"])
    b.runs.add(step=2, stream=STDERR, at=2.0, lines=1, data=b"err")
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        await log.append(b)
        await log.append(batch(4, [b"x", b""], step=3))
        got = [(ln.sequence, ln.step, ln.stream, ln.content) for ln in await log.read_all()]
    assert got == [(1, 0, STDOUT, b"out1"), (2, 0, STDOUT, b"out2"), (3, 2, STDERR, b"err"),
                   (4, 3, STDOUT, b"x"), (5, 3, STDOUT, b"")]


async def test_masks_again_before_storage(tmp_path):
    secret = "hunter2-very-secret"
    b64 = base64.b64encode(secret.encode())
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1, secrets=[secret])
        await log.append(batch(1, [b"pw=" + secret.encode(), b"enc " + b64, b"\xff\xfe raw"]))
        contents = [ln.content for ln in await log.read_all()]
    assert contents == [b"pw=***", b"enc ***", b"\xff\xfe raw"]
    raw = (tmp_path / "job-1" / "1.log").read_bytes()
    assert secret.encode() not in raw and b64 not in raw


async def test_multiline_secret_masked_per_line_and_count_kept(tmp_path):
    secret = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----"
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1, secrets=[secret])
        assert await log.append(batch(1, secret.encode().split(b"\n") + [b"after"])) == 4
        contents = [ln.content for ln in await log.read_all()]
    assert b"AAAABBBBCCCC" not in b"".join(contents)
    assert contents[-1] == b"after" and len(contents) == 4


async def test_follow_yields_stored_then_live_then_ends(tmp_path):
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        await log.append(batch(1, numbered(1, 3)))
        seen: list[int] = []
        reached = asyncio.Event()

        async def follower():
            async for line in log.follow(2):
                seen.append(line.sequence)
                if line.sequence == 3:
                    reached.set()
            return "ended"

        task = asyncio.create_task(follower())
        try:
            await asyncio.wait_for(reached.wait(), 10)
            await log.append(batch(4, numbered(4, 2)))
            await log.close()
            assert await asyncio.wait_for(task, 10) == "ended"
        finally:
            task.cancel()
    assert seen == [2, 3, 4, 5]


async def test_closed_log_refuses_and_follow_ends_after_restart(tmp_path):
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        await log.append(batch(1, numbered(1, 2)))
        await log.close()
        with pytest.raises(LogClosed):
            await log.append(batch(3, numbered(3, 1)))
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1, create=False)
        assert log.closed and log.highest_sequence == 2
        got = [ln.content async for ln in log.follow()]
    assert got == numbered(1, 2)


async def test_recovery_cuts_torn_tail_and_stale_index(tmp_path):
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        for first in range(1, 31, 10):
            await log.append(batch(first, numbered(first, 10)))
    path = tmp_path / "job-1" / "1.log"
    good = path.stat().st_size
    # a crash mid-write: half a frame on disk, and an index entry for it
    torn = frames.encode(31, 10, batch(31, numbered(31, 10)).SerializeToString())
    with open(path, "ab") as f:
        f.write(torn[: len(torn) // 2])
    with open(path.with_suffix(".idx"), "ab") as f:
        f.write(frames.INDEX_ENTRY.pack(31, good))
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        assert log.highest_sequence == 30
        assert path.stat().st_size == good
        assert await log.append(batch(31, numbered(31, 10))) == 40
        lines = [ln.sequence async for ln in _until_closed(log)]
    assert lines == list(range(1, 41))


async def _until_closed(log):
    await log.close()
    async for line in log.follow():
        yield line


async def test_follow_from_middle_uses_index(tmp_path):
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        for first in range(1, 1001, 100):
            await log.append(batch(first, numbered(first, 100)))
        await log.close()
        got = [ln.sequence async for ln in log.follow(555)]
    assert got == list(range(555, 1001))


async def test_long_line_chunks_keep_continuation(tmp_path):
    big = os.urandom(200_000).replace(b"\n", b"x")
    chunks = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    async with LogStore(tmp_path) as store:
        log = await store.open("job-1", 1)
        await log.append(batch(1, chunks, cont=range(2, len(chunks) + 1)))
        lines = await log.read_all()
    assert b"".join(ln.content for ln in lines) == big
    assert [ln.continuation for ln in lines] == [False] + [True] * (len(chunks) - 1)


def test_bad_job_ids_never_become_paths(tmp_path):
    store = LogStore(tmp_path)
    for bad in ["../x", "a/b", ".hidden", ""]:
        with pytest.raises(Exception, match="cannot name"):
            store.path(bad, 1)


def test_iter_lines_round_trip():
    b = batch(7, [b"a", b"", b"c"])
    assert [(ln.sequence, ln.content) for ln in iter_lines(b)] == [(7, b"a"), (8, b""), (9, b"c")]


async def test_follower_of_a_store_shut_down_is_told(tmp_path):
    store = LogStore(tmp_path)
    log = await store.open("job-1", 1)
    await log.append(batch(1, numbered(1, 1)))
    seen = []
    waiting = asyncio.Event()

    async def follower():
        async for line in log.follow():
            seen.append(line.sequence)
            waiting.set()

    task = asyncio.create_task(follower())
    try:
        await asyncio.wait_for(waiting.wait(), 10)
        await store.aclose()
        with pytest.raises(LogClosed):
            await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
    assert seen == [1]


def _threads_and_fds() -> tuple[int, int]:
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


async def test_closed_logs_hold_no_thread_or_descriptor_and_stay_readable(tmp_path):
    # A node runs jobs for weeks: a finished job's log must not keep a writer thread and
    # two descriptors until the node stops (that ran a node out of threads and fds).
    async with LogStore(tmp_path) as store:
        warm = await store.open("job-warm", 1)
        await warm.append(batch(1, numbered(1, 1)))
        await warm.close()
        before = _threads_and_fds()
        # Thread pools (the store's writers, asyncio's default executor used by
        # readers) grow lazily up to their size, more so on a busy machine:
        # allow that, and run enough jobs that a thread per job would show.
        pools = WRITER_THREADS + min(32, (os.cpu_count() or 1) + 4)
        logs = []
        for n in range(pools + 20):
            log = await store.open(f"job-{n}", 1)
            await log.append(batch(1, numbered(1, 3)))
            # a follower reading while the log closes keeps working
            follower = asyncio.ensure_future(_collect(log))
            await log.close()
            assert await follower == numbered(1, 3)
            logs.append(log)
        threads, fds = _threads_and_fds()
        assert fds <= before[1] + 2 and threads <= before[0] + pools, (before, (threads, fds))
        # The closed handles still read (from the file), and the store reads them again on open.
        assert [ln.content for ln in await logs[0].read_all()] == numbered(1, 3)
        again = await store.open("job-7", 1, create=False)
        assert again is not logs[7] and again.closed and again.highest_sequence == 3
        assert [ln.content async for ln in again.follow()] == numbered(1, 3)
        with pytest.raises(LogClosed):
            await again.append(batch(4, numbered(4, 1)))
        assert _threads_and_fds()[1] <= before[1] + 2


async def _collect(log) -> list[bytes]:
    return [ln.content async for ln in log.follow()]


async def test_shared_writers_keep_each_log_in_order_even_when_a_caller_is_cancelled(tmp_path):
    # The store's logs share a few writer threads: the changes of one log must
    # still run one at a time, in call order, and a change whose caller gave up
    # still completes (so the next batch does not find a gap).
    async with LogStore(tmp_path) as store:
        logs = [await store.open(f"job-{n}", 1) for n in range(6)]
        calls = [asyncio.ensure_future(log.append(batch(1 + 3 * i, numbered(1 + 3 * i, 3))))
                 for i in range(15) for log in logs]
        await asyncio.sleep(0)  # every call has asked for its change
        calls[7].cancel()  # log 1's second batch: its caller hangs up mid-append
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[7], asyncio.CancelledError)
        assert all(r == 45 or isinstance(r, asyncio.CancelledError) for r in results[-6:]), results[-6:]
        for log in logs:
            assert log.highest_sequence == 45
            await log.close()
            assert [ln.content for ln in await log.read_all()] == numbered(1, 45)
