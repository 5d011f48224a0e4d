"""Caches as ZFS volumes on bhyve hosts: restored by ``zfs clone`` (constant time), attached as a disk.

Layout under ``drivers.bhyve.cache_dataset`` (say ``rpool/solstice/caches``)::

    <root>/vms/<vm>-c<i>                     cache disk i of a running VM (a clone, or a new volume)
    <root>/<repo id>/<branch id>-<digest>    a saved cache: one volume per (repository, branch, name, key)
        @saved                               what the next job clones
        solstice:cache-{name,key,branch,created,used}   user properties (the key in full)

``prepare`` (before boot, when the key's files are not known yet) picks the
saved cache to clone by the key's fixed part (the text before its first
``{{``) and the ``restore_keys`` prefixes: the newest match in the job's
branches in order; with nothing found the disk is a new empty volume. The
runner resolves the exact key after checkout and says so (``mark_save``)
when the restored cache is not that key's; once the VM has stopped
(``finish``, from the driver's teardown) the disk is renamed to the saved
name and snapshotted: no data is copied. Otherwise the disk is destroyed.
A repository over its bound loses its least recently used caches (those no
clone depends on). Disks of VMs that no longer exist go in reconciliation
(the driver lists their VMs as its own).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.rpc import jobs_pb2
from orchestrator.caches.scope import CacheScope, scope_id
from orchestrator.drivers.errors import CommandFailed

log = logging.getLogger(__name__)
GONE = "dataset does not exist"
SNAP = "saved"
PROPS = ("solstice:cache-name", "solstice:cache-key", "solstice:cache-branch", "solstice:cache-created",
         "solstice:cache-used")
Run = Callable[..., Awaitable[Any]]  # ZoneTools.run: (*argv, check=...) -> CommandResult


@dataclass
class CacheDisk:
    """One cache disk of one VM."""

    name: str
    dataset: str
    matched_key: str  # the saved key it was cloned from, "" for a new volume
    save_key: str = ""  # set by the runner's SaveCache: save under this key at teardown


@dataclass
class _VmCaches:
    job: tuple[str, int]
    scope: CacheScope
    disks: list[CacheDisk] = field(default_factory=list)


@dataclass(frozen=True)
class SavedCache:
    dataset: str
    name: str
    key: str
    branch: str
    created: float
    used: float
    bytes: int


def fixed_part(template: str) -> str:
    """The text of a key template before its first expression."""
    return template.split("{{", 1)[0]


class ZfsCaches:
    """The ZFS side of caches for one bhyve driver (see the module docstring)."""

    def __init__(self, run: Run, zfs: str, root: str, volume_size: str, max_repo_bytes: int) -> None:
        self.run = run
        self.zfs = zfs
        self.root = root
        self.volume_size = volume_size
        self.max_repo_bytes = max_repo_bytes
        self._vms: dict[str, _VmCaches] = {}
        self._jobs: dict[tuple[str, int], str] = {}

    def disk_name(self, vm: str, index: int) -> str:
        return f"{self.root}/vms/{vm}-c{index}"

    def vm_of_disk(self, name: str) -> str | None:
        prefix = f"{self.root}/vms/"
        if not name.startswith(prefix) or "-c" not in name:
            return None
        return name[len(prefix):].rsplit("-c", 1)[0]

    def _saved_name(self, scope: CacheScope, branch: str, name: str, key: str) -> str:
        digest = hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()[:24]
        return f"{self.root}/{scope.repo_id}/{scope_id(branch)}-{digest}"

    async def saved(self, repo_id: str) -> list[SavedCache]:
        """Every saved cache of a repository."""
        result = await self.run(self.zfs, "list", "-H", "-p", "-o", "name,used," + ",".join(PROPS), "-t", "volume",
                                "-r", f"{self.root}/{repo_id}", check=False)
        if result.exit_code != 0:
            if GONE in result.stderr:
                return []
            raise CommandFailed(result.argv, result.exit_code, result.stderr)
        out = []
        for line in result.stdout.splitlines():
            fields = line.split("\t")
            if len(fields) != 7 or "-" in (fields[2], fields[3]) or not fields[0].startswith(f"{self.root}/{repo_id}/"):
                continue
            name, used, cname, key, branch, created, last = fields
            out.append(SavedCache(name, cname, key, branch, _float(created), _float(last),
                                  int(used) if used.isdigit() else 0))
        return out

    def pick(self, saved: Sequence[SavedCache], scope: CacheScope, spec: jobs_pb2.CacheSpec) -> SavedCache | None:
        """The saved cache a new VM's disk is cloned from (see the module docstring)."""
        prefixes = [p for p in [fixed_part(spec.key)] + [fixed_part(k) for k in spec.restore_keys] if p]
        for prefix in prefixes:
            for branch in scope.reads:
                matches = [s for s in saved if s.name == spec.name and s.branch == branch and s.key.startswith(prefix)]
                if matches:
                    return max(matches, key=lambda s: s.created)
        return None

    async def prepare(self, vm: str, job_id: str, attempt: int, scope: CacheScope,
                      specs: Sequence[jobs_pb2.CacheSpec]) -> list[str]:
        """Make the VM's cache disks (clones or new volumes); their dataset names, in ``specs`` order."""
        state = _VmCaches((job_id, attempt), scope)
        self._vms[vm] = state
        self._jobs[(job_id, attempt)] = vm
        await self.run(self.zfs, "create", "-p", f"{self.root}/vms")
        saved = await self.saved(scope.repo_id)
        for index, spec in enumerate(specs):
            disk = self.disk_name(vm, index)
            found = self.pick(saved, scope, spec)
            if found is not None:
                await self.run(self.zfs, "clone", f"{found.dataset}@{SNAP}", disk)
                await self.run(self.zfs, "set", f"solstice:cache-used={time.time():.3f}", found.dataset, check=False)
            else:
                await self.run(self.zfs, "create", "-V", self.volume_size, disk)
            state.disks.append(CacheDisk(spec.name, disk, found.key if found else ""))
        return [d.dataset for d in state.disks]

    def knows(self, job_id: str, attempt: int) -> bool:
        return (job_id, attempt) in self._jobs

    def _disk(self, job_id: str, attempt: int, name: str) -> tuple[_VmCaches, CacheDisk] | None:
        vm = self._jobs.get((job_id, attempt))
        state = self._vms.get(vm or "")
        disk = next((d for d in state.disks if d.name == name), None) if state else None
        return (state, disk) if state and disk else None

    def restored(self, job_id: str, attempt: int, name: str) -> str:
        """The key the job's disk ``name`` was cloned from ("" for a new volume)."""
        found = self._disk(job_id, attempt, name)
        return found[1].matched_key if found else ""

    def mark_save(self, job_id: str, attempt: int, name: str, key: str) -> bool:
        """Save disk ``name`` under ``key`` at teardown; False when nothing is to be saved."""
        found = self._disk(job_id, attempt, name)
        if found is None or found[0].scope.writes is None or found[1].matched_key == key:
            return False
        found[1].save_key = key
        return True

    async def finish(self, vm: str) -> None:
        """After the VM stopped: save the marked disks (rename + snapshot), destroy the others.
        Also removes disks of a VM this process does not know (an earlier process's)."""
        state = self._vms.pop(vm, None)
        disks = state.disks if state is not None else []
        if state is not None:
            self._jobs.pop(state.job, None)
        known = {d.dataset for d in disks}
        for disk in disks:
            if disk.save_key and state is not None and state.scope.writes is not None:
                try:
                    if await self._save(state.scope, disk):
                        continue
                except CommandFailed as err:
                    log.error("cache not saved: %s", err, extra={"fields": {"vm": vm, "cache": disk.name}})
            await self._destroy(disk.dataset)
        for leftover in await self._disks_of(vm):
            if leftover not in known:
                await self._destroy(leftover)
        if state is not None and any(d.save_key for d in disks):
            await self.evict(state.scope.repo_id)

    async def _save(self, scope: CacheScope, disk: CacheDisk) -> bool:
        assert scope.writes is not None
        target = self._saved_name(scope, scope.writes, disk.name, disk.save_key)
        await self.run(self.zfs, "create", "-p", f"{self.root}/{scope.repo_id}")
        renamed = await self.run(self.zfs, "rename", disk.dataset, target, check=False)
        if renamed.exit_code != 0:
            if "dataset already exists" in renamed.stderr:
                return False  # saved meanwhile by another job: the first save stands
            raise CommandFailed(renamed.argv, renamed.exit_code, renamed.stderr)
        now = f"{time.time():.3f}"
        for prop, value in zip(PROPS, (disk.name, disk.save_key, scope.writes, now, now)):
            await self.run(self.zfs, "set", f"{prop}={value}", target)
        await self.run(self.zfs, "snapshot", f"{target}@{SNAP}")
        log.info("cache saved", extra={"fields": {"dataset": target, "cache": disk.name, "key": disk.save_key}})
        return True

    async def _destroy(self, dataset: str) -> None:
        result = await self.run(self.zfs, "destroy", dataset, check=False)
        if result.exit_code != 0 and GONE not in result.stderr:
            raise CommandFailed(result.argv, result.exit_code, result.stderr)

    async def _disks_of(self, vm: str) -> list[str]:
        return [name for name in await self.vm_disks() if self.vm_of_disk(name) == vm]

    async def vm_disks(self) -> list[str]:
        """Every VM cache disk on the host (reconciliation lists their VMs as the driver's own)."""
        result = await self.run(self.zfs, "list", "-H", "-o", "name", "-t", "volume", "-d", "1",
                                f"{self.root}/vms", check=False)
        if result.exit_code != 0:
            if GONE in result.stderr:
                return []
            raise CommandFailed(result.argv, result.exit_code, result.stderr)
        return [line for line in result.stdout.splitlines() if self.vm_of_disk(line)]

    async def evict(self, repo_id: str) -> list[str]:
        """Destroy the repository's least recently used caches until it is within its bound; a cache
        a running VM's disk is cloned from stays (zfs refuses: dependent clones)."""
        saved = await self.saved(repo_id)
        total = sum(s.bytes for s in saved)
        gone = []
        for entry in sorted(saved, key=lambda s: s.used):
            if total <= self.max_repo_bytes:
                break
            result = await self.run(self.zfs, "destroy", "-r", entry.dataset, check=False)
            if result.exit_code == 0:
                total -= entry.bytes
                gone.append(entry.dataset)
        return gone


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
