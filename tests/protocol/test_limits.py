"""What the orchestrator holds a runner to: its token outlives its job; its log stops at the limit;
and what reading a log of any size costs (one piece at a time)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import grpc
import jwt
import pytest

from common.logbatch import STDOUT, SYSTEM
from common.rpc import jobs_pb2, runner_pb2
from common.version import VERSION
from orchestrator.logstore import LogStore, chunks
from orchestrator.node.lifecycle import token_lifetime
from orchestrator.node.settings import TimeoutConfig
from tests.protocol.harness import assigned, bearer, orchestrator, stub

STEPS = [jobs_pb2.Step(name="one", run="true")]


def batch(job_id: str, first: int, lines: list[bytes], stream: int = STDOUT,
          continuations: tuple[int, ...] = ()) -> runner_pb2.LogBatch:
    b = runner_pb2.LogBatch(first_sequence=first)
    b.job.job_id, b.job.attempt = job_id, 1
    b.runs.add(step=0, stream=stream, at=time.time(), lines=len(lines), data=b"\n".join(lines))
    b.continuations.extend(continuations)
    return b


async def test_a_runner_token_outlives_its_job_timeout_and_every_phase_around_it(tmp_path: Path):
    timeouts = TimeoutConfig()
    day = 24 * 3600.0
    ttl = token_lifetime(timeouts, day)
    assert ttl == day + 600 + 120 + 300 + 60 + 30 + 300  # job + prepare, boot, runner, margin, cancel grace, slack
    async with orchestrator(tmp_path, ttl=6 * 3600) as orch:  # the node's grpc.token_ttl: 6 h
        session = orch.gateway.assign(assigned("job-long", STEPS, timeout=day), token_ttl=ttl)
        short = orch.gateway.assign(assigned("job-short", STEPS, timeout=60), token_ttl=token_lifetime(timeouts, 60))
    claims = jwt.decode(session.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] >= ttl - 1  # not 6 h whatever the timeout
    short_claims = jwt.decode(short.token, options={"verify_signature": False})
    assert short_claims["exp"] - short_claims["iat"] >= 6 * 3600 - 1  # grpc.token_ttl stays the least


async def test_a_runner_that_ships_past_the_log_limit_ends_its_job_failed(tmp_path: Path):
    async with orchestrator(tmp_path) as orch:
        job = dataclasses.replace(assigned("job-loud", STEPS), log_limit_bytes=1000)
        session = orch.gateway.assign(job)
        channel, client = stub(orch.server.address)
        async with channel:
            ref = runner_pb2.JobRef(job_id="job-loud", attempt=1)
            got = await client.GetJob(runner_pb2.GetRunnerJobRequest(job=ref, runner_version=VERSION),
                                      metadata=bearer(session.token))
            assert (got.log_limit_bytes, got.log_limit_fails) == (1000, False)
            call = client.StreamLogs(metadata=bearer(session.token))
            assert (await call.read()).durable_sequence == 0
            line = b"x" * 99_999  # 100 000 bytes with its newline: within the 1 MiB slack
            await call.write(batch("job-loud", 1, [line]))
            assert (await call.read()).durable_sequence == 1
            sequence = 2
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                while True:  # a runner ignoring its limit
                    await call.write(batch("job-loud", sequence, [line]))
                    await call.read()
                    sequence += 1
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        outcome = await session.wait_finished()
    assert outcome.state == jobs_pb2.JOB_STATE_FAILED
    assert outcome.reason == "the runner sent more log than the job's limit of 1000 bytes"
    assert 10 <= sequence <= 12  # it stopped at limit + slack, not later


async def test_a_log_read_in_small_pieces_is_exactly_the_log_read_whole(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(chunks, "READ_CHUNK", 300)  # many pieces, and frames larger than one piece
    batches = [
        batch("job-r", 1, [b"## not a note", b"caf\xc3\xa9"]),
        batch("job-r", 3, [b"step 1: Build"], stream=SYSTEM),
        batch("job-r", 4, [b"a long line sta", b"rts here and", b" ends \xe2\x82"], continuations=(5, 6)),
        batch("job-r", 7, [b"x" * 1000, b"y" * 1000], continuations=(8,)),  # one frame of 2 KB
        batch("job-r", 9, [b"rest of it", b"last"], stream=SYSTEM, continuations=(9,)),
    ]
    async with LogStore(tmp_path / "logs") as store:
        joblog = await store.open("job-r", 1)
        for b in batches:
            await joblog.append(b)
        pieces = [piece async for piece in joblog.chunks(chunks.lines_of)]
        assert len(pieces) > 2
        assert [ln for piece in pieces for ln in piece] == chunks.lines_of(batches)
        # from a sequence on: the batches are trimmed to it, whatever piece it falls in
        lines = [ln for group in [g async for g in joblog.chunks(chunks.lines_of, 8)] for ln in group]
        assert [ln.sequence for ln in lines] == [8, 9, 10]
        await joblog.close()
        assert [ln.sequence async for ln in joblog.follow(9)] == [9, 10]  # a closed log: read from the file
