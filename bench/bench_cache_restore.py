"""Cache restore time: a ZFS clone (bhyve, on the fake ZFS) against copying the same files.

Run: .venv/bin/python bench/bench_cache_restore.py [--sizes 16,256,1024] [--file-kb 256]

For each size a saved cache of that many MB (files of --file-kb KB) is made,
then restored three ways, as a job would get it before its first step:

    zfs clone     ZfsCaches.prepare on the fake zfs: list the repository's saved caches,
                  zfs clone <saved>@saved <vm disk>, zfs set (what the bhyve driver runs);
                  "in tools" is the time inside the zfs processes (each fake is a Python
                  process: ~tens of ms to start), "own" the rest
    copy          shutil.copytree of the same files (what a directory cache costs on the node)
    channel       RestoreCache over the runner channel into a checkout (local and qemu drivers)

On real ZFS a clone shares the snapshot's blocks: its cost does not grow with
the cache. The fake shares files by hard links, so its clone grows with the
number of files (not their bytes); the copy and the channel grow with bytes.
Not part of the test suite; prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from common.artifacts import FileWriter  # noqa: E402
from common.grpc_options import client_options  # noqa: E402
from common.rpc import jobs_pb2, runner_pb2, runner_pb2_grpc  # noqa: E402
from common.tokens import TokenIssuer  # noqa: E402
from orchestrator.caches import DirectoryCaches, cache_scope  # noqa: E402
from orchestrator.caches.zfs import ZfsCaches  # noqa: E402
from orchestrator.commands import run_command  # noqa: E402
from orchestrator.drivers.bhyve_zone import tool_env  # noqa: E402
from orchestrator.logstore import LogStore  # noqa: E402
from orchestrator.runnerapi import AssignedJob, RunnerGateway, RunnerServer  # noqa: E402
from tests.drivers.support import seed  # noqa: E402
from tests.fakes.illumos.host import FakeHost  # noqa: E402
from tests.fakes.illumos.zfs import data_dir  # noqa: E402

ROOT = "rpool/solstice/caches"
KEY = b"bench-signing-key-of-32-bytes-or-more"
SPEC = jobs_pb2.CacheSpec(name="deps", key="deps-1", path="deps")
IN_TOOLS = [0.0]


def request(job_id: str) -> jobs_pb2.JobRequest:
    req = jobs_pb2.JobRequest(schema_version=1, job_id=job_id, key="build", runs_on="x", trusted=True, caches=[SPEC])
    req.checkout.forge, req.checkout.repo, req.checkout.ref = "github", "o/r", "refs/heads/main"
    req.steps.add(run="true")
    return req


async def zfs_run(*argv: str, check: bool = True):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    try:
        return await run_command(argv, timeout=120, check=check, env=tool_env())
    finally:
        IN_TOOLS[0] += time.perf_counter() - start


def make_files(folder: Path, mb: int, file_kb: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    count = max(1, mb * 1024 // file_kb)
    block = os.urandom(file_kb * 1024)
    for i in range(count):
        (folder / f"f{i:05d}.rlib").write_bytes(block)


async def restore_zfs(host: FakeHost, zfs: str, source: Path, n: int) -> tuple[float, float]:
    caches = ZfsCaches(zfs_run, zfs, ROOT, "8G", 1 << 60)
    scope = cache_scope(request("job-z"))
    saved = f"{ROOT}/{scope.repo_id}/bench{n}"
    await zfs_run(zfs, "create", "-p", "-V", "8G", saved)
    shutil.copytree(source, data_dir(saved), dirs_exist_ok=True)
    for prop, value in (("name", "deps"), ("key", "deps-1"), ("branch", "main"), ("created", "1"), ("used", "1")):
        await zfs_run(zfs, "set", f"solstice:cache-{prop}={value}", saved)
    await zfs_run(zfs, "snapshot", f"{saved}@saved")
    IN_TOOLS[0] = 0.0
    start = time.perf_counter()
    [disk] = await caches.prepare(f"solstice-0000000{n}-1", f"job-z{n}", 1, scope, [SPEC])
    wall, tools = time.perf_counter() - start, IN_TOOLS[0]
    assert len(list(data_dir(disk).iterdir())) == len(list(source.iterdir()))
    await caches.finish(f"solstice-0000000{n}-1")
    await zfs_run(zfs, "destroy", "-r", saved)
    return wall, tools


async def restore_channel(root: Path, source: Path, n: int) -> float:
    caches = DirectoryCaches(root / f"caches{n}", 1 << 60)
    scope = cache_scope(request("job-s"))
    files = sorted(source.iterdir())

    async def chunks():  # type: ignore[no-untyped-def]
        from common.artifacts import file_chunks
        for path in files:
            for chunk in file_chunks("deps", path.name, path):
                yield chunk
    await caches.save(scope, "deps", "deps-1", chunks(), 0)
    async with LogStore(root / f"logs{n}") as logs:
        gateway = RunnerGateway(logs, TokenIssuer(KEY, ttl_seconds=600), caches=caches)
        async with RunnerServer(gateway, port=0, grace_seconds=0.5) as server:
            job = f"job-r{n}"
            session = gateway.assign(AssignedJob(job, 1, request(job)))
            async with grpc.aio.insecure_channel(server.address, options=client_options()) as channel:
                stub = runner_pb2_grpc.RunnerServiceStub(channel)
                target = root / f"restored{n}"
                target.mkdir()
                writer = FileWriter(target, replace=True)
                ask = runner_pb2.CacheRequest(name="deps", key="deps-1")
                ask.job.job_id, ask.job.attempt = job, 1
                start = time.perf_counter()
                async for message in stub.RestoreCache(ask, metadata=(("authorization", f"Bearer {session.token}"),)):
                    if message.HasField("chunk"):
                        await asyncio.to_thread(writer.add, message.chunk)
                writer.finish()
                return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,256,1024", help="cache sizes in MB (default 16,256,1024)")
    parser.add_argument("--file-kb", type=int, default=256, help="size of each file in KB (default 256)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    host = FakeHost.create()
    os.environ.update(host.env)
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    rows = []
    try:
        seed(host)
        zfs = host.tool("zfs")
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
            root = Path(tmp)
            for n, mb in enumerate(sizes):
                source = root / f"src{n}"
                make_files(source, mb, args.file_kb)
                wall, tools = asyncio.run(restore_zfs(host, zfs, source, n))
                start = time.perf_counter()
                shutil.copytree(source, root / f"copy{n}")
                copy = time.perf_counter() - start
                channel = asyncio.run(restore_channel(root, source, n))
                files = len(list(source.iterdir()))
                rows.append((mb, files, wall, tools, copy, channel))
                shutil.rmtree(root / f"copy{n}")
    finally:
        host.remove()
    print(f"{'MB':>6} {'files':>6} {'zfs clone ms':>13} {'(in tools)':>11} {'(own)':>7} {'copy ms':>9} "
          f"{'channel ms':>11} {'copy/clone':>11}")
    for mb, files, wall, tools, copy, channel in rows:
        print(f"{mb:>6} {files:>6} {wall * 1000:>13.1f} {tools * 1000:>11.1f} {(wall - tools) * 1000:>7.1f} "
              f"{copy * 1000:>9.1f} {channel * 1000:>11.1f} {copy / wall:>10.2f}x")


if __name__ == "__main__":
    main()
