"""Artifact upload and download throughput through the runner channel (real gRPC on loopback).

Run: .venv/bin/python bench/bench_artifacts.py [--mb 256] [--files 4] [--rounds 3]

The runner's own code does the sending (runner.artifacts: 1 MiB chunks, CRC-32
per chunk, sha256 per file); the node's ArtifactStore writes and verifies them
(staging directory, rename into place). Download is the node serving the same
files to the runner of a job that needs them (FileWriter into a checkout).
Prints MB/s per direction (best and median of the rounds) and, for scale, the
speed of a plain file copy of the same bytes on the same disk.
Not part of the test suite; prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.artifacts import FileWriter  # noqa: E402
from common.grpc_options import client_options  # noqa: E402
from common.rpc import jobs_pb2, runner_pb2, runner_pb2_grpc  # noqa: E402
from common.tokens import TokenIssuer  # noqa: E402
from orchestrator.artifacts.store import ArtifactSource  # noqa: E402
from orchestrator.logstore import LogStore  # noqa: E402
from orchestrator.runnerapi import AssignedJob, RunnerGateway, RunnerServer  # noqa: E402
from runner.artifacts import _messages, matching_files  # noqa: E402

import grpc  # noqa: E402

KEY = b"bench-signing-key-of-32-bytes-or-more"


def _request(job_id: str, key: str, needs: list[str] = ()) -> jobs_pb2.JobRequest:  # type: ignore[assignment]
    req = jobs_pb2.JobRequest(schema_version=1, job_id=job_id, key=key, runs_on="bench", needs=list(needs),
                              artifacts=[jobs_pb2.ArtifactSpec(name="dist", path="dist")])
    req.steps.add(run="true")
    return req


async def one_round(root: Path, work: Path, rounds: int) -> tuple[list[float], list[float]]:
    total = sum(p.stat().st_size for p in (work / "dist").rglob("*") if p.is_file())
    ups, downs = [], []
    async with LogStore(root / "logs") as logs:
        gateway = RunnerGateway(logs, TokenIssuer(KEY, ttl_seconds=3600))
        async with RunnerServer(gateway, port=0, grace_seconds=0.5) as server:
            channel = grpc.aio.insecure_channel(server.address, options=client_options())
            stub = runner_pb2_grpc.RunnerServiceStub(channel)
            for n in range(rounds):
                producer = f"job-p{n}"
                s = gateway.assign(AssignedJob(producer, 1, _request(producer, "build")))
                md = (("authorization", f"Bearer {s.token}"),)
                ref = runner_pb2.JobRef(job_id=producer, attempt=1)
                files = matching_files(work, jobs_pb2.ArtifactSpec(name="dist", path="dist"))
                start = time.perf_counter()
                receipt = await stub.UploadArtifact(_messages(ref, jobs_pb2.ArtifactSpec(name="dist", path="dist"),
                                                              files), metadata=md)
                ups.append(total / (time.perf_counter() - start) / 1e6)
                assert receipt.bytes == total

                consumer = f"job-c{n}"
                c = gateway.assign(AssignedJob(consumer, 1, _request(consumer, "ship", ["build"]),
                                               artifact_inputs=(ArtifactSource("build", producer, 1),)))
                target = root / f"checkout-{n}"
                target.mkdir()
                writer = FileWriter(target, replace=True)
                request = runner_pb2.ArtifactDownload(job_key="build", artifact="dist")
                request.job.job_id, request.job.attempt = consumer, 1
                start = time.perf_counter()
                async for chunk in stub.DownloadArtifact(request, metadata=(("authorization", f"Bearer {c.token}"),)):
                    await asyncio.to_thread(writer.add, chunk)
                writer.finish()
                downs.append(total / (time.perf_counter() - start) / 1e6)
                shutil.rmtree(target)
                shutil.rmtree(logs.root / producer, ignore_errors=True)
            await channel.close()
    return ups, downs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="artifact size in MB (default 256)")
    parser.add_argument("--files", type=int, default=4, help="files it is split into (default 4)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        root = Path(tmp)
        work = root / "work"
        (work / "dist").mkdir(parents=True)
        per = args.mb * 1_000_000 // args.files
        for i in range(args.files):
            (work / "dist" / f"part-{i}.bin").write_bytes(os.urandom(per))
        start = time.perf_counter()
        shutil.copytree(work / "dist", root / "copy")
        copy_rate = args.mb / (time.perf_counter() - start)
        ups, downs = asyncio.run(one_round(root, work, args.rounds))
    print(f"artifact of {args.mb} MB in {args.files} files, {args.rounds} rounds, runner channel on loopback")
    print(f"{'direction':<10} {'best MB/s':>10} {'median MB/s':>12}")
    for name, rates in (("upload", ups), ("download", downs)):
        print(f"{name:<10} {max(rates):>10.1f} {statistics.median(rates):>12.1f}")
    print(f"{'file copy':<10} {copy_rate:>10.1f} {'':>12}   (shutil.copytree of the same files, for scale)")


if __name__ == "__main__":
    main()
