"""``ArtifactArchive``: artifacts in the state store's database, so every node of a cluster reads them.

The node that stores an upload keeps its files (``ArtifactStore``) and copies
the artifact here before the upload is acknowledged: the runner's Complete
comes after it, so a job that needs this one finds its artifacts whichever
node runs it. Chunks go first, the manifest row last: a reader that finds the
manifest finds every chunk. Retention deletes a job's rows with its logs;
``expire`` deletes those past their own ``expire``.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from common.artifacts import CHUNK_BYTES, ArtifactError, safe_relpath
from common.rpc import jobs_pb2
from orchestrator.store.backend import Backend
from orchestrator.store.errors import StoreError


class ArtifactArchive:
    """Artifacts in ``backend`` (tables of migration 010)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def _run(self, sql: str, *args: object) -> Sequence[Any]:
        try:
            return await self.backend.run(sql, *args)
        except StoreError as err:
            raise ArtifactError(f"the artifact archive failed: {err}") from err

    async def put(self, manifest: dict[str, Any], files: Path) -> None:
        """Copy one stored artifact (its manifest and the files under ``files``) into the archive."""
        key = (manifest["job_id"], manifest["attempt"], manifest["name"])
        await self._run("DELETE FROM artifact_manifests WHERE job_id = $1 AND attempt = $2 AND name = $3", *key)
        await self._run("DELETE FROM artifact_chunks WHERE job_id = $1 AND attempt = $2 AND name = $3", *key)
        for entry in manifest["files"]:
            rel = safe_relpath(entry["path"])
            with (files / rel).open("rb") as handle:
                seq = 0
                while data := handle.read(CHUNK_BYTES):
                    await self._run("INSERT INTO artifact_chunks (job_id, attempt, name, path, seq, data)"
                                    " VALUES ($1, $2, $3, $4, $5, $6)", *key, rel, seq, data)
                    seq += 1
        await self._run("INSERT INTO artifact_manifests (job_id, attempt, name, manifest, expires_at)"
                        " VALUES ($1, $2, $3, $4, $5)", *key, json.dumps(manifest), manifest.get("expires_at"))

    async def manifests(self, job_id: str, attempt: int) -> list[dict[str, Any]]:
        """The attempt's archived artifacts (expired ones left out), by name."""
        rows = await self._run("SELECT manifest FROM artifact_manifests WHERE job_id = $1 AND attempt = $2"
                               " AND (expires_at IS NULL OR expires_at > $3) ORDER BY name",
                               job_id, attempt, time.time())
        return [json.loads(row["manifest"]) for row in rows]

    async def chunks(self, manifest: dict[str, Any]) -> AsyncIterator[jobs_pb2.ArtifactChunk]:
        """The artifact's files as chunks (the node's own files' format: common.artifacts)."""
        key = (manifest["job_id"], manifest["attempt"], manifest["name"])
        for entry in manifest["files"]:
            rows = await self._run("SELECT seq, data FROM artifact_chunks WHERE job_id = $1 AND attempt = $2"
                                   " AND name = $3 AND path = $4 ORDER BY seq", *key, entry["path"])
            offset = 0
            for i, row in enumerate(rows):
                data = bytes(row["data"])
                chunk = jobs_pb2.ArtifactChunk(artifact=manifest["name"], path=entry["path"], offset=offset,
                                               data=data, crc32=zlib.crc32(data))
                offset += len(data)
                if i == len(rows) - 1:
                    chunk.last, chunk.size, chunk.sha256 = True, entry["size"], entry["sha256"]
                    chunk.mode = entry.get("mode", 0o644)
                yield chunk
            if not rows:  # an empty file is one empty last chunk
                yield jobs_pb2.ArtifactChunk(artifact=manifest["name"], path=entry["path"], crc32=zlib.crc32(b""),
                                             last=True, size=0, sha256=entry["sha256"], mode=entry.get("mode", 0o644))

    async def delete(self, job_ids: Sequence[str]) -> None:
        """Every archived artifact of these jobs (retention)."""
        for job_id in job_ids:
            await self._run("DELETE FROM artifact_chunks WHERE job_id = $1", job_id)
            await self._run("DELETE FROM artifact_manifests WHERE job_id = $1", job_id)

    async def expire(self) -> int:
        """Delete archived artifacts past their ``expire``; how many went."""
        rows = await self._run("SELECT job_id, attempt, name FROM artifact_manifests"
                               " WHERE expires_at IS NOT NULL AND expires_at <= $1", time.time())
        for row in rows:
            key = (row["job_id"], row["attempt"], row["name"])
            await self._run("DELETE FROM artifact_manifests WHERE job_id = $1 AND attempt = $2 AND name = $3", *key)
            await self._run("DELETE FROM artifact_chunks WHERE job_id = $1 AND attempt = $2 AND name = $3", *key)
        return len(rows)
