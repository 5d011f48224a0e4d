"""Artifacts and caches on the wire: specs from the workflow, files to checksummed chunks and back.

    requests: output_specs(job) -> (ArtifactSpec list, CacheSpec list) for a JobRequest
    checks:   check_outputs(request, field)  what a request may say (common/validation.py calls it)
    sending:  file_chunks(name, rel, path)   a file as ArtifactChunk messages
    keeping:  FileWriter(root, limits)       chunks in, verified files out (uploads and downloads)

A chunk carries its data's CRC-32 and the last chunk of a file the file's
size, sha256 and mode, so a file torn or altered on the way is refused rather
than stored. Paths are relative and '/'-separated: ``safe_relpath`` refuses
anything that could leave the directory it is written under.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from common.errors import SolsticeError
from common.rpc import jobs_pb2
from common.workflow.cachekeys import template_problem
from common.workflow.limits import show_bytes
from common.workflow.model import Job
from common.workflow.names import ID_RULE, is_id

CHUNK_BYTES = 1 << 20  # well under the 16 MiB gRPC message limit, large enough to stream fast
MAX_FILES = 10_000  # per artifact: a listing and a manifest stay small
WHEN = ("", "success", "failure", "always")


class ArtifactError(SolsticeError):
    """An artifact cannot be stored, sent or read; the message says which file and why."""


class ArtifactTooLarge(ArtifactError):
    """A file or a job's artifacts together are over a limit."""


@dataclass(frozen=True)
class ArtifactLimits:
    """Size bounds of artifacts; 0 = no limit. ``setting`` names where an operator changes them."""

    max_file_bytes: int = 0
    max_job_bytes: int = 0
    setting: str = "artifacts"

    def check_file(self, artifact: str, rel: str, size: int) -> None:
        if self.max_file_bytes and size > self.max_file_bytes:
            raise ArtifactTooLarge(
                f'artifact "{artifact}": {rel} is {show_bytes(size)}; the limit per file is '
                f"{show_bytes(self.max_file_bytes)} ({self.setting}.max_file_bytes)")

    def check_job(self, artifact: str, rel: str, total: int) -> None:
        if self.max_job_bytes and total > self.max_job_bytes:
            raise ArtifactTooLarge(
                f'artifact "{artifact}": with {rel} the job\'s artifacts reach {show_bytes(total)}; the limit '
                f"per job is {show_bytes(self.max_job_bytes)} ({self.setting}.max_job_bytes)")


def output_specs(job: Job) -> tuple[list[jobs_pb2.ArtifactSpec], list[jobs_pb2.CacheSpec]]:
    """A workflow job's artifacts and caches as JobRequest fields."""
    artifacts = [jobs_pb2.ArtifactSpec(name=a.name, path=a.path, expire_seconds=a.expire or 0.0, when=a.when)
                 for a in job.artifacts]
    caches = [jobs_pb2.CacheSpec(name=c.name, key=c.key, path=c.path, restore_keys=list(c.restore_keys))
              for c in job.caches]
    return artifacts, caches


def safe_relpath(path: str) -> str:
    """``path`` if it is a relative, '/'-separated path without '..'; else ArtifactError."""
    pure = PurePosixPath(path)
    if (not path or "\0" in path or "\\" in path or pure.is_absolute() or ".." in pure.parts
            or str(pure) != path or path in (".", "")):
        raise ArtifactError(f"artifact path {path[:80]!r} is not a plain relative path")
    return path


def check_outputs(request: jobs_pb2.JobRequest, field: str) -> str | None:
    """``"field: problem"`` for the first artifact or cache a request may not carry, else None."""
    names: set[str] = set()
    for i, spec in enumerate(request.artifacts):
        where = f"{field}artifacts[{i}]"
        if not is_id(spec.name) or spec.name in names:
            return f"{where}.name: must be unique and {ID_RULE}"
        names.add(spec.name)
        glob = spec.path
        if not glob or glob.startswith("/") or ".." in glob.split("/") or "\0" in glob or len(glob) > 1024:
            return f"{where}.path: must be a relative glob inside the checkout"
        if spec.when not in WHEN:
            return f"{where}.when: must be success, failure or always"
        if not 0 <= spec.expire_seconds <= 366 * 86400:
            return f"{where}.expire_seconds: must be between 0 and 366 days"
    names.clear()
    for i, cache in enumerate(request.caches):
        where = f"{field}caches[{i}]"
        if not is_id(cache.name) or cache.name in names:
            return f"{where}.name: must be unique and {ID_RULE}"
        names.add(cache.name)
        for key in (cache.key, *cache.restore_keys):
            problem = template_problem(key)
            if problem:
                return f"{where}.key: {key[:60]!r} {problem}"
        if not cache.path or "\0" in cache.path or ".." in cache.path.split("/") or len(cache.path) > 1024:
            return f"{where}.path: must be a path without '..'"
    return None


def file_chunks(artifact: str, rel: str, path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[jobs_pb2.ArtifactChunk]:
    """The file at ``path`` as chunks named ``rel``; the last one carries size, sha256 and mode."""
    digest = hashlib.sha256()
    offset = 0
    with path.open("rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode & 0o777
        data = handle.read(chunk_bytes)
        while True:
            following = handle.read(chunk_bytes) if data else b""
            digest.update(data)
            chunk = jobs_pb2.ArtifactChunk(artifact=artifact, path=rel, offset=offset, data=data,
                                           crc32=zlib.crc32(data))
            offset += len(data)
            if not following:
                chunk.last = True
                chunk.size = offset
                chunk.sha256 = digest.hexdigest()
                chunk.mode = mode
                yield chunk
                return
            yield chunk
            data = following


@dataclass(frozen=True)
class StoredFile:
    """One file written by a ``FileWriter``."""

    path: str
    size: int
    sha256: str
    mode: int = 0o644


class FileWriter:
    """Writes chunked files under ``root``, checking every checksum and the limits as they arrive.

    ``already`` counts bytes the job stored before (its other artifacts) against the job limit.
    A file's bytes go to ``<root>/<path>`` as they come; a caller that gets an error
    removes ``root`` (uploads write into a directory of their own, renamed when complete).
    """

    def __init__(self, root: Path, limits: ArtifactLimits = ArtifactLimits(), already: int = 0,
                 replace: bool = False) -> None:
        self.root = root
        self.replace = replace  # a download into a checkout overwrites files of the same name
        self.limits = limits
        self.total = already
        self.files: list[StoredFile] = []
        self._open: tuple[str, object, hashlib._Hash, int] | None = None  # rel, handle, digest, size

    def add(self, chunk: jobs_pb2.ArtifactChunk) -> None:
        """Take one chunk; ArtifactError on a bad checksum, order or path, ArtifactTooLarge over a limit."""
        rel = safe_relpath(chunk.path)
        if zlib.crc32(chunk.data) != chunk.crc32:
            raise ArtifactError(f"artifact {chunk.artifact!r}: {rel} chunk at {chunk.offset} fails its CRC-32 check")
        if self._open is None or self._open[0] != rel:
            if self._open is not None:
                raise ArtifactError(f"artifact {chunk.artifact!r}: {self._open[0]} ended without its last chunk")
            if chunk.offset != 0:
                raise ArtifactError(f"artifact {chunk.artifact!r}: {rel} starts at offset {chunk.offset}, not 0")
            if any(f.path == rel for f in self.files) or len(self.files) >= MAX_FILES:
                raise ArtifactError(f"artifact {chunk.artifact!r}: {rel} is sent twice or past {MAX_FILES} files")
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            # A symlinked directory in the way could point anywhere: refuse rather than follow it.
            if not target.parent.resolve().is_relative_to(self.root.resolve()):
                raise ArtifactError(f"artifact {chunk.artifact!r}: {rel} would be written outside its directory")
            if self.replace and (target.is_symlink() or target.is_file()):
                target.unlink()
            handle = open(target, "xb")  # noqa: SIM115 - closed on the last chunk or by abort()
            self._open = (rel, handle, hashlib.sha256(), 0)
        rel_, handle, digest, size = self._open
        if chunk.offset != size:
            raise ArtifactError(f"artifact {chunk.artifact!r}: {rel} chunk at {chunk.offset}, expected {size}")
        size += len(chunk.data)
        self.total += len(chunk.data)
        self.limits.check_file(chunk.artifact, rel, size)
        self.limits.check_job(chunk.artifact, rel, self.total)
        handle.write(chunk.data)  # type: ignore[attr-defined]
        digest.update(chunk.data)
        self._open = (rel_, handle, digest, size)
        if chunk.last:
            handle.close()  # type: ignore[attr-defined]
            self._open = None
            if chunk.size != size or chunk.sha256 != digest.hexdigest():
                raise ArtifactError(f"artifact {chunk.artifact!r}: {rel} arrived as {size} bytes that do not "
                                    "match its size and sha256")
            mode = (chunk.mode & 0o755) | 0o600
            os.chmod(self.root / rel, mode)
            self.files.append(StoredFile(rel, size, chunk.sha256, mode))

    def finish(self) -> list[StoredFile]:
        """The files written; ArtifactError if one is unfinished."""
        if self._open is not None:
            self.abort()
            raise ArtifactError("the artifact's stream ended in the middle of a file")
        return self.files

    def abort(self) -> None:
        if self._open is not None:
            self._open[1].close()  # type: ignore[attr-defined]
            self._open = None
