"""``DirectoryCaches``: caches as directories on the node ("copy" mode: local and qemu drivers).

Layout: ``<root>/<repo id>/<branch id>/<name>/<key>/{meta.json,files/…}``.
A save is written under ``<root>/.staging/`` and renamed into place, so a
torn save leaves nothing a restore could find (``reconcile`` removes the
staging left by a crash). A key once saved is never overwritten: the first
save wins, later ones are dropped (caches are immutable, as on ZFS).
``meta.json`` carries ``used`` (the last restore), by which the least
recently used entries of a repository go once it is over its bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import ArtifactLimits, FileWriter, file_chunks, safe_relpath
from common.rpc import jobs_pb2
from common.workflow.cachekeys import KEY_RE
from common.workflow.names import is_id
from orchestrator.caches.scope import CacheScope, scope_id

log = logging.getLogger(__name__)
META = "meta.json"
STAGING = ".staging"
STALE_STAGING = 6 * 3600.0  # a save in progress longer than this was cut off by a crash


class CacheError(Exception):
    """A cache cannot be saved or read (the message says why)."""


@dataclass(frozen=True)
class CacheEntry:
    """One saved cache."""

    path: Path
    repo: str
    branch: str
    name: str
    key: str
    size: int
    files: tuple[str, ...]
    created: float
    used: float


def _entry(path: Path) -> CacheEntry | None:
    try:
        meta = json.loads((path / META).read_text())
        return CacheEntry(path, meta["repo"], meta["branch"], meta["name"], meta["key"], int(meta["size"]),
                          tuple(meta["files"]), float(meta["created"]), float(meta["used"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DirectoryCaches:
    """Caches under ``root``, at most ``max_repo_bytes`` per repository."""

    def __init__(self, root: Path, max_repo_bytes: int) -> None:
        self.root = Path(root)
        self.max_repo_bytes = max_repo_bytes

    def _folder(self, repo: str, branch: str, name: str) -> Path:
        if not is_id(name):
            raise CacheError(f"cache name {name!r} is not valid")
        return self.root / scope_id(repo) / scope_id(branch) / name

    def _entries(self, folder: Path) -> list[CacheEntry]:
        if not folder.is_dir():
            return []
        found = (_entry(p) for p in folder.iterdir() if p.is_dir())
        return [e for e in found if e is not None]

    async def lookup(self, scope: CacheScope, name: str, key: str,
                     restore_keys: tuple[str, ...] = ()) -> CacheEntry | None:
        """The entry to restore: ``key`` in the first branch that has it, else the newest entry
        whose key starts with a ``restore_keys`` prefix (prefixes in order, branches in order)."""
        def find() -> CacheEntry | None:
            folders = [self._folder(scope.repo, branch, name) for branch in scope.reads]
            for folder in folders:
                if KEY_RE.fullmatch(key) and (folder / key / META).is_file():
                    return _entry(folder / key)
            for prefix in restore_keys:
                for folder in folders:
                    matches = [e for e in self._entries(folder) if e.key.startswith(prefix)]
                    if matches:
                        return max(matches, key=lambda e: e.created)
            return None
        found = await asyncio.to_thread(find)
        if found is not None:
            await asyncio.to_thread(self._touch, found)
        return found

    @staticmethod
    def _touch(entry: CacheEntry) -> None:
        meta = json.loads((entry.path / META).read_text())
        meta["used"] = time.time()
        tmp = entry.path / f".{META}.{secrets.token_hex(4)}"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, entry.path / META)

    async def chunks(self, entry: CacheEntry) -> AsyncIterator[jobs_pb2.ArtifactChunk]:
        """The entry's files as chunks (``common.artifacts.file_chunks``)."""
        for rel in entry.files:
            iterator = file_chunks(entry.name, rel, entry.path / "files" / safe_relpath(rel))
            while True:
                chunk = await asyncio.to_thread(next, iterator, None)
                if chunk is None:
                    break
                yield chunk

    async def exists(self, scope: CacheScope, name: str, key: str) -> bool:
        if scope.writes is None:
            return False
        return await asyncio.to_thread((self._folder(scope.repo, scope.writes, name) / key / META).is_file)

    async def save(self, scope: CacheScope, name: str, key: str, chunks: AsyncIterator[jobs_pb2.ArtifactChunk],
                   max_bytes: int) -> CacheEntry | None:
        """Store the files of ``chunks`` as ``name``/``key`` in the scope's branch; None when the key
        was saved already. CacheError when the scope may not write; ArtifactError on a bad stream."""
        if scope.writes is None:
            raise CacheError("this job may not save caches (a fork's pull request only restores them)")
        if not KEY_RE.fullmatch(key):
            raise CacheError(f"cache key {key!r} is not valid")
        target = self._folder(scope.repo, scope.writes, name) / key
        staging = self.root / STAGING / secrets.token_hex(8)
        try:
            await asyncio.to_thread(staging.mkdir, 0o700, True)
            writer = FileWriter(staging / "files", ArtifactLimits(max_bytes, max_bytes, setting="caches"))
            await asyncio.to_thread((staging / "files").mkdir, 0o700)
            async for chunk in chunks:
                await asyncio.to_thread(writer.add, chunk)
            files = writer.finish()
            now = time.time()
            meta = {"repo": scope.repo, "branch": scope.writes, "name": name, "key": key,
                    "size": sum(f.size for f in files), "files": [f.path for f in files], "created": now, "used": now}
            await asyncio.to_thread((staging / META).write_text, json.dumps(meta))
            installed = await asyncio.to_thread(self._install, staging, target)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        if not installed:
            return None
        await self.evict(scope.repo)
        return _entry(target)

    @staticmethod
    def _install(staging: Path, target: Path) -> bool:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if target.exists():
            return False  # saved meanwhile by another job: the first save stands
        try:
            staging.rename(target)
        except OSError:  # lost a race for the same key
            return False
        return True

    async def evict(self, repo: str) -> list[CacheEntry]:
        """Delete the repository's least recently used entries until it is within its bound."""
        def go() -> list[CacheEntry]:
            base = self.root / scope_id(repo)
            entries = [e for p in base.glob("*/*/*") if p.is_dir() for e in [_entry(p)] if e is not None]
            total = sum(e.size for e in entries)
            gone = []
            for entry in sorted(entries, key=lambda e: e.used):
                if total <= self.max_repo_bytes:
                    break
                shutil.rmtree(entry.path, ignore_errors=True)
                total -= entry.size
                gone.append(entry)
            return gone
        gone = await asyncio.to_thread(go)
        for entry in gone:
            log.info("cache evicted", extra={"fields": {"repo": entry.repo, "cache": entry.name, "key": entry.key}})
        return gone

    async def reconcile(self) -> int:
        """Remove saves a crash cut off, and evict every repository down to its bound; how many went."""
        def stale() -> list[Path]:
            base = self.root / STAGING
            cutoff = time.time() - STALE_STAGING
            return [p for p in base.iterdir() if p.stat().st_mtime < cutoff] if base.is_dir() else []
        removed = 0
        for path in await asyncio.to_thread(stale):
            await asyncio.to_thread(shutil.rmtree, path, True)
            removed += 1
        repos: set[str] = set()
        for meta in await asyncio.to_thread(lambda: list(self.root.glob(f"*/*/*/*/{META}"))):
            entry = _entry(meta.parent)
            if entry is not None:
                repos.add(entry.repo)
        for repo in repos:
            removed += len(await self.evict(repo))
        return removed
