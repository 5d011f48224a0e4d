"""Attempts that log nothing: their log is written closed and empty in one go, byte for byte what
``open`` + ``close`` leave, and a log that exists is never overwritten."""

from __future__ import annotations

import os

from common.logbatch import STDOUT
from common.rpc import jobs_pb2, runner_pb2
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.runnerapi import AssignedJob, RunnerGateway


def one_line(text: bytes) -> runner_pb2.LogBatch:
    b = runner_pb2.LogBatch(first_sequence=1)
    b.runs.add(step=0, stream=STDOUT, at=1.0, lines=1, data=text)
    return b


async def test_create_closed_writes_what_open_and_close_would(tmp_path):
    async with LogStore(tmp_path) as store:
        opened = await store.open("job-a", 1)
        await opened.close()
        assert await store.create_closed("job-b", 1)
        for job in ("job-a", "job-b"):
            log = await store.open(job, 1, create=False)
            assert log.closed and log.highest_sequence == 0 and await log.read_all() == []
            assert [line async for line in log.follow()] == []  # a follower ends at once
    for suffix in ("log", "idx"):
        assert (tmp_path / "job-b" / f"1.{suffix}").read_bytes() == (tmp_path / "job-a" / f"1.{suffix}").read_bytes()


async def test_create_closed_leaves_an_existing_log_alone(tmp_path):
    async with LogStore(tmp_path) as store:
        log = await store.open("job-a", 1)
        await log.append(one_line(b"kept"))
        assert not await store.create_closed("job-a", 1)  # open in this store
        await log.close()
        before = (tmp_path / "job-a" / "1.log").read_bytes()
        assert not await store.create_closed("job-a", 1)  # on disk
        assert (tmp_path / "job-a" / "1.log").read_bytes() == before
        reopened = await store.open("job-a", 1, create=False)
        assert [line.content for line in await reopened.read_all()] == [b"kept"]


async def test_a_session_finished_without_lines_leaves_a_closed_empty_log(tmp_path):
    async with LogStore(tmp_path) as store:
        gateway = RunnerGateway(store, TokenIssuer(os.urandom(32), 3600.0))
        quiet = gateway.assign(AssignedJob("quiet", 1, jobs_pb2.JobRequest(job_id="quiet")))
        chatty = gateway.assign(AssignedJob("chatty", 1, jobs_pb2.JobRequest(job_id="chatty")))
        await (await chatty.log()).append(one_line(b"hello"))
        assert (await quiet.finish(jobs_pb2.JOB_STATE_SUCCEEDED, "")).log_tail == []
        assert (await chatty.finish(jobs_pb2.JOB_STATE_SUCCEEDED, "")).log_tail == ["hello"]
        quiet_log = await store.open("quiet", 1, create=False)
        assert quiet_log.closed and await quiet_log.read_all() == []
        chatty_log = await store.open("chatty", 1, create=False)
        assert chatty_log.closed and [line.content for line in await chatty_log.read_all()] == [b"hello"]
