"""The artifact archive on both back-ends: what one node stores, another node lists and downloads
(a cluster's job that needs another runs wherever); expired and retained-away artifacts are gone."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from common.artifacts import FileWriter, file_chunks
from common.rpc import jobs_pb2
from orchestrator.artifacts.archive import ArtifactArchive
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.store import Store


async def _upload(folder: Path) -> AsyncIterator[jobs_pb2.ArtifactChunk]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            for chunk in file_chunks("dist", path.relative_to(folder).as_posix(), path):
                yield chunk


async def test_an_artifact_stored_on_one_node_is_read_on_another(store: Store, tmp_path: Path) -> None:
    archive = ArtifactArchive(store.backend)  # type: ignore[attr-defined]
    node_a, node_b = ArtifactStore(tmp_path / "a", archive), ArtifactStore(tmp_path / "b", archive)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    big = os.urandom(2_500_000)  # three chunks
    (src / "sub" / "big.bin").write_bytes(big)
    (src / "empty").write_bytes(b"")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    stored = await node_a.receive("job-1", 1, "build", 0, _upload(src), node_a_limits())
    assert (stored.files, stored.bytes) == (3, 2_500_010)

    [seen] = await node_b.list("job-1", 1)
    assert (seen.name, seen.files, seen.bytes, seen.job_key) == ("dist", 3, 2_500_010, "build")
    out = tmp_path / "out"
    out.mkdir()
    writer = FileWriter(out)
    async for chunk in node_b.chunks("job-1", 1, "dist"):
        writer.add(chunk)
    assert [f.path for f in writer.finish()] == ["empty", "run.sh", "sub/big.bin"]
    assert (out / "sub" / "big.bin").read_bytes() == big and (out / "empty").read_bytes() == b""
    assert (out / "run.sh").stat().st_mode & 0o111
    viewer = ArtifactStore(None, archive)  # the cluster's dashboard: no files of its own
    assert [a.bytes for a in await viewer.list("job-1", 1)] == [2_500_010]
    assert b"".join([c.data async for c in viewer.chunks("job-1", 1, "dist") if c.path == "sub/big.bin"]) == big

    # Uploaded again (a retried attempt's resend) with an expire already past: replaced, then expired.
    await node_a.receive("job-1", 1, "build", 1e-6, _upload(src / "sub"), node_a_limits())
    assert await node_b.list("job-1", 1) == []
    assert await archive.expire() == 1
    assert await archive.manifests("job-1", 1) == []

    await node_a.receive("job-2", 1, "build", 0, _upload(src / "sub"), node_a_limits())
    await archive.delete(["job-2"])  # retention, with the job's logs
    assert await node_b.list("job-2", 1) == []


def node_a_limits():  # type: ignore[no-untyped-def]
    from common.artifacts import ArtifactLimits
    return ArtifactLimits(10 << 20, 20 << 20)
