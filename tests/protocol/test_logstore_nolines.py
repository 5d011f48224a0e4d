"""Attempts that log nothing store no log at all; one that logged keeps its log, closed."""

from __future__ import annotations

import os

import pytest

from common.logbatch import STDOUT
from common.rpc import jobs_pb2, runner_pb2
from common.tokens import TokenIssuer
from orchestrator.logstore import LogNotFound, LogStore, LogStoreError
from orchestrator.runnerapi import AssignedJob, RunnerGateway


def one_line(text: bytes) -> runner_pb2.LogBatch:
    b = runner_pb2.LogBatch(first_sequence=1)
    b.runs.add(step=0, stream=STDOUT, at=1.0, lines=1, data=text)
    return b


async def test_exists_sees_open_logs_and_logs_on_disk(tmp_path):
    async with LogStore(tmp_path) as store:
        assert not await store.exists("job-a", 1)
        log = await store.open("job-a", 1)
        assert await store.exists("job-a", 1)  # open in this store
        await log.close()
        assert await store.exists("job-a", 1)  # closed: on disk
        assert not await store.exists("job-a", 2)
        with pytest.raises(LogStoreError, match="cannot name a log file"):
            await store.exists("../etc", 1)
    async with LogStore(tmp_path) as again:
        assert await again.exists("job-a", 1)


async def test_a_session_finished_without_lines_stores_no_log(tmp_path):
    async with LogStore(tmp_path) as store:
        gateway = RunnerGateway(store, TokenIssuer(os.urandom(32), 3600.0))
        quiet = gateway.assign(AssignedJob("quiet", 1, jobs_pb2.JobRequest(job_id="quiet")))
        chatty = gateway.assign(AssignedJob("chatty", 1, jobs_pb2.JobRequest(job_id="chatty")))
        await (await chatty.log()).append(one_line(b"hello"))
        assert (await quiet.finish(jobs_pb2.JOB_STATE_SUCCEEDED, "")).log_tail == []
        assert (await chatty.finish(jobs_pb2.JOB_STATE_SUCCEEDED, "")).log_tail == ["hello"]
        assert not (tmp_path / "quiet").exists()  # no directory, no file: nothing to store
        with pytest.raises(LogNotFound):
            await store.open("quiet", 1, create=False)
        chatty_log = await store.open("chatty", 1, create=False)
        assert chatty_log.closed and [line.content for line in await chatty_log.read_all()] == [b"hello"]


async def test_a_log_opened_but_never_written_is_kept_closed(tmp_path):
    async with LogStore(tmp_path) as store:
        gateway = RunnerGateway(store, TokenIssuer(os.urandom(32), 3600.0))
        session = gateway.assign(AssignedJob("opened", 1, jobs_pb2.JobRequest(job_id="opened")))
        await session.log()  # a runner opened its stream, then sent nothing
        assert (await session.finish(jobs_pb2.JOB_STATE_FAILED, "boom")).log_tail == []
        log = await store.open("opened", 1, create=False)
        assert log.closed and await log.read_all() == []
        assert [line async for line in log.follow()] == []  # a follower ends at once
