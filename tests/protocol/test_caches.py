"""Caches over the runner channel ("copy" mode), through a real gRPC server: one job saves, the next
restores; a fork's pull request restores its base branch's cache and is refused when it saves."""

from __future__ import annotations

import zlib
from pathlib import Path

import grpc
import pytest

from common.rpc import jobs_pb2, runner_pb2
from common.tokens import TokenIssuer
from orchestrator.caches import DirectoryCaches
from orchestrator.logstore import LogStore
from orchestrator.runnerapi import AssignedJob, RunnerGateway, RunnerServer
from tests.protocol.harness import KEY, bearer, stub

CACHE = jobs_pb2.CacheSpec(name="deps", key="deps-{{ hash x.lock }}", path="~/.deps")


def request(job_id: str, *, ref: str = "refs/heads/main", trusted: bool = True, pull: int = 0,
            base: str = "") -> jobs_pb2.JobRequest:
    req = jobs_pb2.JobRequest(schema_version=1, job_id=job_id, key="build", runs_on="local", trusted=trusted,
                              caches=[CACHE], cache_base_ref=base)
    req.checkout.forge, req.checkout.repo, req.checkout.ref = "github", "o/r", ref
    req.checkout.pull_request = pull
    req.steps.add(run="true")
    return req


def chunk(path: str, data: bytes) -> jobs_pb2.ArtifactChunk:
    import hashlib
    return jobs_pb2.ArtifactChunk(artifact="deps", path=path, offset=0, data=data, crc32=zlib.crc32(data), last=True,
                                  size=len(data), sha256=hashlib.sha256(data).hexdigest(), mode=0o644)


async def test_saved_by_one_job_restored_by_the_next_and_a_fork_cannot_write(tmp_path: Path) -> None:
    caches = DirectoryCaches(tmp_path / "caches", 1 << 30)
    async with LogStore(tmp_path / "logs") as logs:
        gateway = RunnerGateway(logs, TokenIssuer(KEY, ttl_seconds=600), caches=caches, cache_max_bytes=1 << 20)
        async with RunnerServer(gateway, port=0, grace_seconds=0.5) as server:
            channel, runner = stub(server.address)
            async with channel:
                async def session(job_id: str, **kw: object):  # type: ignore[no-untyped-def]
                    s = gateway.assign(AssignedJob(job_id, 1, request(job_id, **kw)))  # type: ignore[arg-type]
                    ref = runner_pb2.JobRef(job_id=job_id, attempt=1)
                    job = await runner.GetJob(runner_pb2.GetRunnerJobRequest(job=ref, runner_version=_version()),
                                              metadata=bearer(s.token))
                    return s, ref, job

                async def restore(s, ref, key: str, prefixes=()):  # type: ignore[no-untyped-def]
                    got = [m async for m in runner.RestoreCache(
                        runner_pb2.CacheRequest(job=ref, name="deps", key=key, restore_keys=list(prefixes)),
                        metadata=bearer(s.token))]
                    return got[0], [m.chunk for m in got[1:]]

                async def save(s, ref, key: str, data: bytes) -> runner_pb2.CacheReceipt:  # type: ignore[no-untyped-def]
                    async def messages():  # type: ignore[no-untyped-def]
                        yield runner_pb2.CacheMessage(job=ref, name="deps", key=key)
                        yield runner_pb2.CacheMessage(chunk=chunk("lib/a.so", data))
                    return await runner.SaveCache(messages(), metadata=bearer(s.token))

                s1, r1, job1 = await session("job-1")
                assert (job1.cache_mode, job1.cache_writable, list(job1.caches)) == ("copy", True, [CACHE])
                head, chunks = await restore(s1, r1, "deps-aaa")
                assert (head.matched_key, head.exact, chunks) == ("", False, [])
                receipt = await save(s1, r1, "deps-aaa", b"compiled")
                assert (receipt.saved, receipt.files, receipt.bytes) == (True, 1, 8)
                assert not (await save(s1, r1, "deps-aaa", b"other")).saved  # the first save of a key stands
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await save(s1, r1, "deps\tx/../y", b"x")  # keys name directories and zfs properties
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

                s2, r2, _ = await session("job-2")  # the next run on main
                head, chunks = await restore(s2, r2, "deps-aaa")
                assert (head.matched_key, head.exact) == ("deps-aaa", True)
                assert [(c.path, c.data) for c in chunks] == [("lib/a.so", b"compiled")]
                head, _ = await restore(s2, r2, "deps-bbb", ["deps-"])  # a new lockfile: the prefix finds it
                assert (head.matched_key, head.exact) == ("deps-aaa", False)

                fork, rf, jobf = await session("job-3", ref="refs/pull/7/head", trusted=False, pull=7,
                                               base="refs/heads/main")
                assert jobf.cache_writable is False
                head, chunks = await restore(fork, rf, "deps-aaa")  # reads the base branch's cache
                assert head.exact and chunks[0].data == b"compiled"
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await save(fork, rf, "deps-evil", b"planted")
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "fork's pull request only restores" in (refused.value.details() or "")
                head, _ = await restore(s2, r2, "deps-evil")
                assert head.matched_key == ""  # nothing was planted

                other, ro, _ = await session("job-4", ref="refs/heads/dev")  # another branch: its own caches
                head, _ = await restore(other, ro, "deps-aaa")
                assert head.matched_key == ""
                with pytest.raises(grpc.aio.AioRpcError) as undeclared:
                    await runner.RestoreCache(runner_pb2.CacheRequest(job=ro, name="other", key="k"),
                                              metadata=bearer(other.token)).read()
                assert undeclared.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _version() -> str:
    from common.version import VERSION
    return VERSION
