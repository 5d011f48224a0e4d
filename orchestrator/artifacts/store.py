"""``ArtifactStore``: artifact files of job attempts under the log directory (see the package docstring)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import ArtifactError, ArtifactLimits, FileWriter, file_chunks, safe_relpath
from common.rpc import jobs_pb2
from common.workflow.names import is_id
from orchestrator.artifacts.archive import ArtifactArchive
from orchestrator.logstore.store import _JOB_ID

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


class ArtifactNotFound(ArtifactError):
    """No such artifact is stored here."""


class ArchiveUnavailable(ArtifactError):
    """The artifact archive (the cluster's database) cannot be written or read now."""


@dataclass(frozen=True)
class ArtifactSource:
    """Where a job's inputs come from: the attempt of a needed job (by its key) that succeeded."""

    job_key: str
    job_id: str
    attempt: int


def _info(manifest: dict) -> jobs_pb2.ArtifactInfo:  # type: ignore[type-arg]
    info = jobs_pb2.ArtifactInfo(name=manifest["name"], job_id=manifest["job_id"], attempt=manifest["attempt"],
                                 job_key=manifest.get("job_key", ""), files=len(manifest["files"]),
                                 bytes=sum(f["size"] for f in manifest["files"]))
    info.created_at.FromNanoseconds(int(manifest["created_at"] * 1e9))
    if manifest.get("expires_at"):
        info.expires_at.FromNanoseconds(int(manifest["expires_at"] * 1e9))
    info.file_list.extend(jobs_pb2.ArtifactFile(path=f["path"], size=f["size"], sha256=f["sha256"])
                          for f in manifest["files"])
    return info


class ArtifactStore:
    """Artifacts of this node's job attempts, beside their logs under ``root``."""

    def __init__(self, root: str | Path | None, archive: ArtifactArchive | None = None) -> None:
        self.root = Path(root) if root is not None else None  # None: the archive only (the cluster's dashboard)
        self.archive = archive  # a cluster's: every node reads what any node stored

    def folder(self, job_id: str, attempt: int, name: str | None = None) -> Path:
        if not _JOB_ID.match(job_id) or attempt < 1:
            raise ArtifactError(f"job {job_id!r} attempt {attempt} cannot hold artifacts")
        if self.root is None:
            raise ArtifactNotFound("this process keeps no artifact files")
        base = self.root / job_id / "artifacts" / str(attempt)
        if name is None:
            return base
        if not is_id(name):
            raise ArtifactError(f"artifact name {name!r} is not valid")
        return base / name

    async def receive(self, job_id: str, attempt: int, job_key: str, expire_seconds: float,
                      chunks: AsyncIterator[jobs_pb2.ArtifactChunk], limits: ArtifactLimits,
                      first: jobs_pb2.ArtifactChunk | None = None) -> jobs_pb2.ArtifactInfo:
        """Store one artifact from its chunks (all of one name). Written to a private folder and
        renamed into place once every checksum held: a torn upload leaves nothing behind, a
        repeated one replaces the earlier copy. ArtifactError/ArtifactTooLarge on refusal."""
        base = self.folder(job_id, attempt)
        already = await self.used_bytes(job_id, attempt)
        staging = base / f".upload-{secrets.token_hex(6)}"
        name = ""
        try:
            await asyncio.to_thread(staging.mkdir, 0o700, True, True)
            files_dir = staging / "files"
            await asyncio.to_thread(files_dir.mkdir, 0o700)
            writer: FileWriter | None = None

            async def _all() -> AsyncIterator[jobs_pb2.ArtifactChunk]:
                if first is not None:
                    yield first
                async for chunk in chunks:
                    yield chunk

            async for chunk in _all():
                if writer is None:
                    name = chunk.artifact
                    if not is_id(name):
                        raise ArtifactError(f"artifact name {name!r} is not valid")
                    # A resend replaces the earlier copy: its bytes do not count twice.
                    already -= await self._size_of(job_id, attempt, name)
                    writer = FileWriter(files_dir, limits, already)
                elif chunk.artifact != name:
                    raise ArtifactError(f"one upload carries one artifact ({name!r}, then {chunk.artifact!r})")
                await asyncio.to_thread(writer.add, chunk)
            if writer is None:
                raise ArtifactError("the upload carried no chunk")
            files = writer.finish()
            now = time.time()
            manifest = {"name": name, "job_id": job_id, "attempt": attempt, "job_key": job_key, "created_at": now,
                        "expires_at": now + expire_seconds if expire_seconds > 0 else None,
                        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "mode": f.mode}
                                  for f in files]}
            await asyncio.to_thread(self._install, staging, base / name, manifest)
            if self.archive is not None:
                try:
                    await self.archive.put(manifest, base / name / "files")
                except ArtifactError as err:
                    raise ArchiveUnavailable(str(err)) from err
            return _info(manifest)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    @staticmethod
    def _install(staging: Path, target: Path, manifest: dict) -> None:  # type: ignore[type-arg]
        (staging / MANIFEST).write_text(json.dumps(manifest))
        if target.exists():
            old = target.with_name(f".old-{secrets.token_hex(6)}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        staging.rename(target)

    async def _size_of(self, job_id: str, attempt: int, name: str) -> int:
        try:
            return (await self.get(job_id, attempt, name)).bytes
        except ArtifactNotFound:
            return 0

    async def used_bytes(self, job_id: str, attempt: int) -> int:
        return sum(info.bytes for info in await self.list(job_id, attempt))

    async def _manifest(self, job_id: str, attempt: int, name: str) -> tuple[dict, bool]:  # type: ignore[type-arg]
        """The artifact's manifest and whether its files are on this node (else in the archive)."""
        try:
            path = self.folder(job_id, attempt, name) / MANIFEST
            manifest, local = json.loads(await asyncio.to_thread(path.read_text)), True
        except (FileNotFoundError, ArtifactNotFound):
            found = [m for m in await self._archived(job_id, attempt) if m["name"] == name]
            if not found:
                raise ArtifactNotFound(f"job {job_id} attempt {attempt} has no artifact {name!r}") from None
            manifest, local = found[0], False
        except OSError as err:
            raise ArtifactError(f"cannot read artifact {name!r} of job {job_id}: {err.strerror}") from err
        if manifest.get("expires_at") and manifest["expires_at"] <= time.time():
            raise ArtifactNotFound(f"artifact {name!r} of job {job_id} attempt {attempt} has expired")
        return manifest, local

    async def _archived(self, job_id: str, attempt: int) -> list[dict]:  # type: ignore[type-arg]
        if self.archive is None:
            return []
        try:
            return await self.archive.manifests(job_id, attempt)
        except ArtifactError as err:
            raise ArchiveUnavailable(str(err)) from err

    async def get(self, job_id: str, attempt: int, name: str) -> jobs_pb2.ArtifactInfo:
        return _info((await self._manifest(job_id, attempt, name))[0])

    async def list(self, job_id: str, attempt: int) -> list[jobs_pb2.ArtifactInfo]:
        """The attempt's artifacts, by name (expired ones are left out): this node's, else the archive's."""
        base = self.folder(job_id, attempt) if self.root is not None else None
        names = await asyncio.to_thread(lambda: sorted(p.name for p in base.iterdir() if not p.name.startswith("."))
                                        if base is not None and base.is_dir() else [])
        if not names:
            return [_info(m) for m in await self._archived(job_id, attempt)
                    if not (m.get("expires_at") and m["expires_at"] <= time.time())]
        out = []
        for name in names:
            try:
                out.append(await self.get(job_id, attempt, name))
            except ArtifactError:
                continue
        return out

    async def inputs(self, sources: Iterable[ArtifactSource]) -> list[jobs_pb2.ArtifactInfo]:
        """The artifacts of every source attempt, each marked with its job's key."""
        out = []
        for source in sources:
            for info in await self.list(source.job_id, source.attempt):
                info.job_key = source.job_key
                out.append(info)
        return out

    async def chunks(self, job_id: str, attempt: int, name: str) -> AsyncIterator[jobs_pb2.ArtifactChunk]:
        """Every file of the artifact as chunks (``common.artifacts.file_chunks``)."""
        manifest, local = await self._manifest(job_id, attempt, name)
        if not local:
            assert self.archive is not None
            async for chunk in self.archive.chunks(manifest):
                yield chunk
            return
        info = _info(manifest)
        files = self.folder(job_id, attempt, name) / "files"
        for entry in info.file_list:
            rel = safe_relpath(entry.path)
            iterator = file_chunks(name, rel, files / rel)
            while True:
                chunk = await asyncio.to_thread(next, iterator, None)
                if chunk is None:
                    break
                yield chunk

    async def expire(self) -> int:
        """Delete artifacts past their ``expire``; how many went."""
        def _sweep() -> int:
            gone = 0
            if self.root is None:
                return 0
            now = time.time()
            for manifest_path in self.root.glob(f"*/artifacts/*/*/{MANIFEST}"):
                try:
                    expires = json.loads(manifest_path.read_text()).get("expires_at")
                except (OSError, ValueError):
                    continue
                if expires and expires <= now:
                    shutil.rmtree(manifest_path.parent, ignore_errors=True)
                    gone += 1
            return gone
        gone = await asyncio.to_thread(_sweep)
        if self.archive is not None:
            gone += await self.archive.expire()
        if gone:
            log.info("deleted %d expired artifacts", gone)
        return gone
