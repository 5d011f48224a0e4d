"""The runner's side of caches: resolve keys after checkout, restore before step 1, save after success.

Keys are templates resolved against the checkout (common/workflow/cachekeys.py).
In "copy" mode the files come and go over the runner channel; in "disk" mode
(bhyve) the cache is the VM's second disk, cloned from the saved snapshot
before boot, and only the keys travel. A cache that cannot be restored or
saved never fails the job: caches only make it faster. It is saved when the
job succeeded, may write caches (not a fork's pull request) and restored
nothing under its exact key.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from common.artifacts import ArtifactError, ArtifactLimits, FileWriter, file_chunks
from common.rpc import jobs_pb2, runner_pb2
from common.workflow.cachekeys import resolve_key
from common.workflow.limits import show_bytes
from runner.connection import Connection, ConnectionError_
from runner.settings import RunnerSettings
from runner.steps import StepUser
from runner.workspace import hand_over_tree

log = logging.getLogger(__name__)
Note = Callable[[str], None]


@dataclass
class Restored:
    """What became of one cache before the steps ran."""

    spec: jobs_pb2.CacheSpec
    directory: Path
    key: str = ""  # resolved; "" when it could not be
    matched: str = ""  # the key restored from ("" = nothing)
    exact: bool = False


def cache_dir(path: str, workspace: Path, home: Path) -> Path:
    """Where a cache lives: ``~/x`` under the step user's home, relative under the checkout."""
    if path == "~" or path.startswith("~/"):
        return home / path[2:]
    return Path(path) if path.startswith("/") else workspace / path


async def attach_disk(device: Path, directory: Path) -> str:
    """Put the cache disk ``device`` at ``directory``: "" or why not. A directory at the device's
    place is a filesystem the guest mounted already (an image that mounts by serial, the fake
    guest): the cache path becomes a link to it. A block device is formatted when blank and mounted."""
    if device.is_dir():
        if directory.is_symlink() or directory.exists():
            if directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir()):
                directory.rmdir()
            else:
                return f"{directory} exists already"
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.symlink_to(device.resolve())
        return ""
    if not device.is_block_device():
        return f"its disk {device.name} is not in this VM"
    probe = await asyncio.create_subprocess_exec("blkid", "-o", "value", "-s", "TYPE", str(device),
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    kind = (await probe.communicate())[0].strip()
    steps = ([] if kind else [["mkfs.ext4", "-q", str(device)]]) + [["mount", str(device), str(directory)]]
    directory.mkdir(parents=True, exist_ok=True)
    for argv in steps:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        err = (await proc.communicate())[1].decode(errors="replace").strip()
        if proc.returncode != 0:
            return f"{argv[0]} failed: {err.splitlines()[-1] if err else proc.returncode}"
    return ""


async def restore(conn: Connection, job: runner_pb2.RunnerJob, workspace: Path, home: Path,
                  note: Note, disk_dir: Path = Path("/dev/disk/by-id")) -> list[Restored]:
    """Restore every cache of the job; a problem is noted and the job goes on without that cache."""
    out = []
    for index, spec in enumerate(job.caches):
        item = Restored(spec, cache_dir(spec.path, workspace, home))
        out.append(item)
        try:
            item.key = await asyncio.to_thread(resolve_key, spec.key, workspace, job.runs_on)
            prefixes = [await asyncio.to_thread(resolve_key, p, workspace, job.runs_on) if "{{" in p else p
                        for p in spec.restore_keys]
        except ValueError as err:
            note(f'cache "{spec.name}": {err}; not restored or saved')
            continue
        request = runner_pb2.CacheRequest(name=spec.name, key=item.key, restore_keys=prefixes)
        request.job.CopyFrom(conn.job)
        try:
            if job.cache_mode == "copy":
                await asyncio.to_thread(item.directory.mkdir, 0o755, True, True)
            writer = FileWriter(item.directory, replace=True)
            files = 0
            async for message in conn.stub.RestoreCache(request, metadata=conn.metadata):
                if message.HasField("chunk"):
                    await asyncio.to_thread(writer.add, message.chunk)
                else:
                    item.matched, item.exact = message.matched_key, message.exact
            files = len(writer.finish())
        except (grpc.aio.AioRpcError, ArtifactError, OSError) as err:
            detail = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
            note(f'cache "{spec.name}" was not restored: {detail}')
            item.matched, item.exact = "", False
            continue
        if job.cache_mode == "disk":
            problem = await attach_disk(disk_dir / f"virtio-solstice-c{index}", item.directory)
            if problem:  # nothing to save either: the disk holds not what the steps wrote
                note(f'cache "{spec.name}" is not available: {problem}')
                item.key, item.matched, item.exact = "", "", False
                continue
        if not item.matched:
            note(f'cache "{spec.name}": nothing saved for key {item.key} yet')
        else:
            how = "its key" if item.exact else f"key {item.matched}"
            size = f": {files} files" if job.cache_mode == "copy" else ""
            note(f'cache "{spec.name}" restored from {how}{size} -> {spec.path}')
    return out


def _files(directory: Path) -> list[tuple[str, Path]]:
    root = directory.resolve()
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(root):
            found.append((path.relative_to(directory).as_posix(), path))
    return found


async def save(conn: Connection, job: runner_pb2.RunnerJob, restored: list[Restored], note: Note) -> None:
    """Save each cache not restored under its exact key (the job succeeded and may write caches)."""
    if not job.cache_writable:
        if restored:
            note("caches are not saved: this job only restores them (a fork's pull request)")
        return
    limits = ArtifactLimits(job.cache_max_bytes, job.cache_max_bytes, setting="caches")
    for item in restored:
        if not item.key or item.exact:
            continue
        spec = item.spec
        if not item.directory.is_dir():
            note(f'cache "{spec.name}" is not saved: {spec.path} is not a directory after the steps')
            continue
        try:
            files = await asyncio.to_thread(_files, item.directory) if job.cache_mode == "copy" else []
            total = 0
            for rel, path in files:
                total += path.stat().st_size
                limits.check_job(spec.name, rel, total)
        except (ArtifactError, OSError) as err:
            note(f'cache "{spec.name}" is not saved: {err}')
            continue

        async def messages(spec: jobs_pb2.CacheSpec = spec, key: str = item.key,
                           files: list[tuple[str, Path]] = files) -> AsyncIterator[runner_pb2.CacheMessage]:
            head = runner_pb2.CacheMessage(name=spec.name, key=key)
            head.job.CopyFrom(conn.job)
            yield head
            for rel, path in files:
                chunks = file_chunks(spec.name, rel, path)
                while True:
                    chunk = await asyncio.to_thread(next, chunks, None)
                    if chunk is None:
                        break
                    yield runner_pb2.CacheMessage(chunk=chunk)
        try:
            receipt = await conn.stub.SaveCache(messages(), metadata=conn.metadata)
        except grpc.aio.AioRpcError as err:
            note(f'cache "{spec.name}" is not saved: {err.details()}')
            continue
        except (ConnectionError_, OSError) as err:
            note(f'cache "{spec.name}" is not saved: {err}')
            continue
        if not receipt.saved:
            note(f'cache "{spec.name}": key {item.key} was saved meanwhile by another job')
        elif job.cache_mode == "copy":
            note(f'cache "{spec.name}" saved under key {item.key}: {receipt.files} files, {show_bytes(receipt.bytes)}')
        else:
            note(f'cache "{spec.name}" will be saved under key {item.key} when the VM stops')


async def restore_for(conn: Connection, job: runner_pb2.RunnerJob, workspace: Path, settings: RunnerSettings,
                      user: StepUser | None, note: Note) -> list[Restored]:
    """``restore`` with the runner's settings; caches in the step user's home are handed to it."""
    restored = await restore(conn, job, workspace, home_of(settings.home, user is not None), note, settings.disk_dir)
    if user is not None:
        for item in restored:
            if item.directory.is_relative_to(settings.home) and item.directory.exists():
                await asyncio.to_thread(hand_over_tree, item.directory, user)
    return restored


def home_of(settings_home: Path, has_user: bool) -> Path:
    """The HOME of the steps: the step user's, else the runner's own."""
    return settings_home if has_user else Path(os.environ.get("HOME") or settings_home)
