"""``DirectoryCaches``: scopes, the first save of a key stands, LRU eviction per repository, reconcile."""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

from common.rpc import jobs_pb2
from orchestrator.caches import DirectoryCaches, cache_scope
from orchestrator.caches.dirstore import STAGING


def _request(ref: str = "refs/heads/main", trusted: bool = True, pull: int = 0, base: str = "",
             repo: str = "o/r") -> jobs_pb2.JobRequest:
    req = jobs_pb2.JobRequest(job_id="j", trusted=trusted, cache_base_ref=base)
    req.checkout.forge, req.checkout.repo, req.checkout.ref, req.checkout.pull_request = "github", repo, ref, pull
    return req


async def _files(size: int) -> AsyncIterator[jobs_pb2.ArtifactChunk]:
    data = os.urandom(size)
    yield jobs_pb2.ArtifactChunk(artifact="c", path="blob", data=data, crc32=zlib.crc32(data), last=True,
                                 size=size, sha256=hashlib.sha256(data).hexdigest(), mode=0o644)


def test_scopes_of_pushes_pull_requests_and_forks() -> None:
    push = cache_scope(_request())
    assert (push.reads, push.writes) == (("main",), "main")
    pull = cache_scope(_request("refs/pull/7/head", pull=7, base="refs/heads/main"))
    assert (pull.reads, pull.writes) == (("pull/7", "main"), "pull/7")
    fork = cache_scope(_request("refs/pull/8/head", trusted=False, pull=8, base="refs/heads/main"))
    assert (fork.reads, fork.writes) == (("pull/8", "main"), None)
    assert cache_scope(_request(repo="o/other")).repo_id != push.repo_id


async def test_least_recently_used_entries_go_when_a_repository_is_over_its_bound(tmp_path: Path) -> None:
    caches = DirectoryCaches(tmp_path, max_repo_bytes=2500)
    main = cache_scope(_request())
    other_repo = cache_scope(_request(repo="o/big"))
    for key in ("k1", "k2"):
        assert await caches.save(main, "c", key, _files(1000), 0) is not None
    assert await caches.save(other_repo, "c", "k1", _files(2000), 0) is not None  # its own bound
    assert await caches.save(main, "c", "k1", _files(1000), 0) is None  # a saved key stays as it was
    time.sleep(0.01)
    assert (await caches.lookup(main, "c", "k1")) is not None  # k1 used now: k2 is the oldest use
    assert await caches.save(main, "c", "k3", _files(1000), 0) is not None  # 3000 > 2500: one goes
    assert await caches.lookup(main, "c", "k2") is None
    assert await caches.lookup(main, "c", "k1") is not None and await caches.lookup(main, "c", "k3") is not None
    assert await caches.lookup(other_repo, "c", "k1") is not None


async def test_reconcile_removes_saves_a_crash_cut_off(tmp_path: Path) -> None:
    caches = DirectoryCaches(tmp_path, max_repo_bytes=1 << 30)
    torn = tmp_path / STAGING / "abc"
    (torn / "files").mkdir(parents=True)
    (torn / "files" / "half").write_bytes(b"x" * 10)
    fresh = tmp_path / STAGING / "def"
    fresh.mkdir()
    old = time.time() - 7 * 3600
    os.utime(torn, (old, old))
    assert await caches.reconcile() == 1
    assert not torn.exists() and fresh.exists()  # a save in progress now is left alone
