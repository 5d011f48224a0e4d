"""The runner's side of artifacts: inputs downloaded before the first step, outputs uploaded at the end.

Uploads go one artifact per ``UploadArtifact`` stream in checksummed chunks
(common/artifacts.py). Sizes are checked here before anything is sent, so a
job over a limit says which file and which limit without wasting the
transfer; the orchestrator checks again. A transient loss of the orchestrator
retries the whole artifact (the node stores an artifact only once complete).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

from common.artifacts import ArtifactError, ArtifactLimits, FileWriter, file_chunks
from common.rpc import jobs_pb2, runner_pb2
from common.workflow.limits import show_bytes
from runner.connection import Connection, ConnectionError_

log = logging.getLogger(__name__)
PERMANENT = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
             grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED,
             grpc.StatusCode.FAILED_PRECONDITION)
Note = Callable[[str], None]


class _Permanent(ArtifactError):
    """The orchestrator refused the transfer for good (not an outage)."""


def wanted(spec: jobs_pb2.ArtifactSpec, state: int) -> bool:
    """Whether ``spec`` is uploaded after a job that ended in ``state``."""
    when = spec.when or "success"
    if when == "always":
        return True
    return (state == jobs_pb2.JOB_STATE_SUCCEEDED) == (when == "success")


def matching_files(workspace: Path, spec: jobs_pb2.ArtifactSpec) -> list[tuple[str, Path]]:
    """``(relative path, file)`` for every regular file ``spec.path`` matches inside ``workspace``;
    a matching directory brings its tree. Symlinks are not followed out of the workspace."""
    root = workspace.resolve()
    found: dict[str, Path] = {}
    for match in sorted(workspace.glob(spec.path)):
        candidates = [match] if not match.is_dir() else sorted(p for p in match.rglob("*"))
        for path in candidates:
            if not path.is_file() or not path.resolve().is_relative_to(root):
                continue
            found[path.relative_to(workspace).as_posix()] = path
    return sorted(found.items())


async def _call(conn: Connection, name: str, fn: Callable[[], object]) -> object:
    async def once() -> object:
        try:
            return await fn()  # type: ignore[misc]
        except grpc.aio.AioRpcError as err:
            if err.code() in PERMANENT:
                raise _Permanent(err.details() or err.code().name) from None
            raise
    return await conn.call(name, once)


async def upload(conn: Connection, job: runner_pb2.RunnerJob, workspace: Path, state: int, note: Note) -> str:
    """Upload the artifacts the job's outcome asks for; "" or why the job must fail."""
    limits = ArtifactLimits(job.artifact_max_file_bytes, job.artifact_max_job_bytes, setting="artifacts")
    total = 0
    for spec in job.artifacts:
        if not wanted(spec, state):
            continue
        files = await asyncio.to_thread(matching_files, workspace, spec)
        if not files:
            return f'artifact "{spec.name}": no file matches {spec.path}'
        try:
            for rel, path in files:
                size = path.stat().st_size
                total += size
                limits.check_file(spec.name, rel, size)
                limits.check_job(spec.name, rel, total)
        except ArtifactError as err:
            return str(err)
        note(f'uploading artifact "{spec.name}": {len(files)} files, {show_bytes(sum(p.stat().st_size for _, p in files))}')

        def stream(spec: jobs_pb2.ArtifactSpec = spec,
                   files: list[tuple[str, Path]] = files) -> AsyncIterator[runner_pb2.ArtifactUpload]:
            return _messages(conn.job, spec, files)
        try:
            receipt = await _call(conn, "UploadArtifact", lambda stream=stream: conn.stub.UploadArtifact(
                stream(), metadata=conn.metadata, timeout=None))
        except (ArtifactError, ConnectionError_, OSError) as err:
            return f'artifact "{spec.name}" was not stored: {err}'
        note(f'artifact "{spec.name}" stored: {receipt.files} files, {show_bytes(receipt.bytes)}')  # type: ignore[attr-defined]
    return ""


async def _messages(ref: runner_pb2.JobRef, spec: jobs_pb2.ArtifactSpec,
                    files: list[tuple[str, Path]]) -> AsyncIterator[runner_pb2.ArtifactUpload]:
    first = True
    for rel, path in files:
        chunks = file_chunks(spec.name, rel, path)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            message = runner_pb2.ArtifactUpload(chunk=chunk)
            message.job.CopyFrom(ref)
            if first:
                message.expire_seconds = spec.expire_seconds
                first = False
            yield message


async def download(conn: Connection, job: runner_pb2.RunnerJob, workspace: Path, note: Note) -> str:
    """Put the needed jobs' artifacts into the checkout; "" or why the job cannot start."""
    for info in job.artifact_inputs:
        note(f'downloading artifact "{info.name}" of job {info.job_key}: {info.files} files, {show_bytes(info.bytes)}')

        async def fetch(info: jobs_pb2.ArtifactInfo = info) -> int:
            writer = FileWriter(workspace, replace=True)
            try:
                request = runner_pb2.ArtifactDownload(job_key=info.job_key, artifact=info.name)
                request.job.CopyFrom(conn.job)
                async for chunk in conn.stub.DownloadArtifact(request, metadata=conn.metadata):
                    await asyncio.to_thread(writer.add, chunk)
                return len(writer.finish())
            finally:
                writer.abort()
        try:
            count = await _call(conn, "DownloadArtifact", fetch)
        except (ArtifactError, ConnectionError_, OSError) as err:
            return f'artifact "{info.name}" of job {info.job_key} could not be downloaded: {err}'
        if count != info.files:
            return f'artifact "{info.name}" of job {info.job_key} arrived with {count} of its {info.files} files'
    return ""
