"""The bhyve driver: each job attempt in its own bhyve branded zone on a ZFS clone.

Per VM ``solstice-<hex>-<attempt>`` (names.py), following illumos.md:

    prepare   zfs clone <image>@<snap> <vm_dataset>/<vm>   [zfs set volsize=... ]
              (wait for /dev/zvol/rdsk/<vm_dataset>/<vm>)
              dladm create-vnic -t -l <link> <vnic>
              zonecfg -z <vm> -f <state_dir>/<vm>/zonecfg    (bhyve_zonecfg.py)
              zoneadm -z <vm> install                        (the brand requires it, §1.2)
    boot      zoneadm -z <vm> boot; capture the console socket (the guest waits for it)
    stop      bhyvectl --vm=<vm> --destroy; zoneadm -z <vm> halt
    destroy   the §7 loop on the zone's state (halt / uninstall -F / delete -F),
              dladm delete-vnic, zfs destroy -r <zones_dataset>/<vm>, zfs destroy <disk>

The runner's bootstrap travels as NoCloud user-data (§6.2 option A), written
root-only to ``<state_dir>/<vm>/user-data`` and named by the ``cloud-init``
attribute. Every step of teardown treats "already gone" as success, so destroy
is idempotent and may race with another destroy or with reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path

from common.bootstrap import render_user_data
from orchestrator.catalog import BhyveConfig, ImageEntry
from orchestrator.commands import CommandResult, run_command
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve_console import capture_console, tail_file
from orchestrator.drivers.bhyve_zonecfg import CONSOLE_SOCKET, ZoneConfig, render_zonecfg
from orchestrator.drivers.errors import (
    BootTimeout,
    CommandFailed,
    DriverError,
    ProvisionError,
    VmDied,
)
from orchestrator.names import is_vm_name, validate_vm_name, vm_of_vnic, vnic_name

log = logging.getLogger(__name__)

GONE_ZONE = "No such zone configured"
GONE_DATASET = "dataset does not exist"
GONE_LINK = "invalid link name"
MAX_TEARDOWN_ROUNDS = 12
CONSOLE_SETTLE_SECONDS = 2.0
# What zfs clone, dladm create-vnic and zonecfg say when the name is taken.
LEFTOVER = ("dataset already exists", "object already exists", "Zone exists")


class BhyveDriver:
    """Driver for illumos hosts with the OmniOS bhyve brand (see module docstring)."""

    name = "bhyve"

    def __init__(self, config: BhyveConfig) -> None:
        self.config = config
        self._consoles: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._active: set[str] = set()  # VMs this process provisioned and has not destroyed

    # -- naming ------------------------------------------------------------
    def serves(self, label: str) -> bool:
        return label in self.config.images

    def _disk(self, vm: str) -> str:
        return f"{self.config.vm_dataset}/{vm}"

    def _zonepath(self, vm: str) -> str:
        return f"{str(self.config.zones_path).rstrip('/')}/{vm}"

    def _zonepath_dataset(self, vm: str) -> str:
        return f"{self.config.zones_dataset}/{vm}"

    def _state(self, vm: str) -> Path:
        return self.config.state_dir / vm

    def _host(self, path: str) -> Path:
        return self.config.fs_root / path.lstrip("/")

    def _lock(self, vm: str) -> asyncio.Lock:
        return self._locks.setdefault(vm, asyncio.Lock())

    async def _run(self, *argv: str, check: bool = True, timeout: float | None = None) -> CommandResult:
        return await run_command(argv, timeout=timeout or self.config.command_timeout, check=check)

    # -- lifecycle -----------------------------------------------------------
    async def prepare(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        image = self.config.images.get(spec.label)
        if image is None:
            raise ProvisionError(f"no bhyve image serves runs_on label {spec.label!r}")
        if vm in self._active:
            # Another live job got the same name (8 hex digits of a hash): its
            # VM is no leftover, so refuse rather than tear it down below.
            raise ProvisionError(f"VM name {vm} is in use by a live job on this host")
        self._active.add(vm)
        for retry in (False, True):
            try:
                await self._prepare(vm, spec, image)
                return
            except CommandFailed as err:
                if not retry and any(m in err.stderr for m in LEFTOVER):
                    # Pieces of this very VM survive an orchestrator that died
                    # provisioning it (a redelivered claim of the same attempt):
                    # remove them and start over once (illumos.md §7 step 5).
                    log.warning("leftovers of this VM found; removing them and provisioning again",
                                extra={"fields": {"vm": vm, "error": str(err)}})
                    await self._cleanup_after_failure(vm)
                    continue
                await self._cleanup_after_failure(vm)
                raise ProvisionError(f"could not prepare VM {vm}: {err}") from err
            except DriverError as err:
                await self._cleanup_after_failure(vm)
                raise ProvisionError(f"could not prepare VM {vm}: {err}") from err

    async def _prepare(self, vm: str, spec: VmSpec, image: ImageEntry) -> None:
        c = self.config
        disk = self._disk(vm)
        await self._run(c.zfs, "clone", image.source, disk)
        if image.disk_size:
            await self._run(c.zfs, "set", f"volsize={image.disk_size}", disk)
        await self._wait_for_zvol(disk)
        vnic = vnic_name(vm)
        await self._run(c.dladm, "create-vnic", "-t", "-l", image.link, vnic)
        state = self._state(vm)
        await asyncio.to_thread(_write_private, state, "user-data",
                                render_user_data(spec.bootstrap))
        zonecfg = render_zonecfg(ZoneConfig(
            zone=vm, zonepath=self._zonepath(vm), vnic=vnic, disk=disk,
            vcpus=image.vcpus, ram=image.ram, user_data=str(state / "user-data"),
        ))
        await asyncio.to_thread(_write_private, state, "zonecfg", zonecfg)
        await self._run(c.zonecfg, "-z", vm, "-f", str(state / "zonecfg"))
        await self._run(c.zoneadm, "-z", vm, "install")

    async def _wait_for_zvol(self, disk: str) -> None:
        """Whether a clone's device node exists when ``zfs clone`` returns is
        UNCONFIRMED (illumos.md §4); the boot hook needs it, so wait for it."""
        node = f"/dev/zvol/rdsk/{disk}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.zvol_timeout
        while not await asyncio.to_thread(self._host(node).exists):
            if loop.time() >= deadline:
                raise DriverError(f"{node} did not appear within {self.config.zvol_timeout:g}s of the clone")
            await asyncio.sleep(min(self.config.poll_interval, 0.1))

    async def boot(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        try:
            await self._run(self.config.zoneadm, "-z", vm, "boot")
        except DriverError as err:
            tail = await self.console_tail(vm)
            await self._cleanup_after_failure(vm)
            raise ProvisionError(f"could not boot VM {vm}: {err}", tail) from err
        self._start_console(vm)

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        vm = validate_vm_name(spec.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BootTimeout(vm, timeout, await self.console_tail(vm))
            try:
                await asyncio.wait_for(ready.wait(), min(remaining, self.config.poll_interval))
                return
            except asyncio.TimeoutError:
                pass
            # "running" only means bhyve started (§6.4); a zone that fell back
            # to installed means bhyve or the guest stopped.
            state = await self._zone_state(vm)
            if state != "running" and not ready.is_set():
                # bhyve is gone, so the console socket closes: let the capture
                # write the guest's last words before the tail is read.
                await self._settle_console(vm, CONSOLE_SETTLE_SECONDS)
                raise VmDied(vm, f"zone is {state or 'gone'}", await self.console_tail(vm))

    async def stop(self, name: str) -> None:
        vm = validate_vm_name(name)
        async with self._lock(vm):
            await self._stop(vm)

    async def _stop(self, vm: str) -> None:
        state = await self._zone_state(vm)
        if state in ("running", "ready"):
            # halt alone sends ACPI power-off and may wait up to 30 min for the
            # guest (§1.6); a CI VM is disposable, so pull the plug first.
            await self._run(self.config.bhyvectl, f"--vm={vm}", "--destroy", check=False)
            await self._run(self.config.zoneadm, "-z", vm, "halt", timeout=self.config.halt_timeout)
        await self._stop_console(vm)

    async def destroy(self, name: str) -> None:
        vm = validate_vm_name(name)
        async with self._lock(vm):
            await self._destroy(vm)

    async def _destroy(self, vm: str) -> None:
        c = self.config
        await self._remove_zone(vm)
        await self._stop_console(vm)
        await self._tolerate(GONE_LINK, c.dladm, "delete-vnic", vnic_name(vm))
        await self._tolerate(GONE_DATASET, c.zfs, "destroy", "-r", self._zonepath_dataset(vm))
        await self._tolerate(GONE_DATASET, c.zfs, "destroy", self._disk(vm))
        await asyncio.to_thread(shutil.rmtree, self._state(vm), True)
        self._locks.pop(vm, None)
        self._active.discard(vm)

    async def _remove_zone(self, vm: str) -> None:
        """illumos.md §7: act on the zone's state until it is gone."""
        c = self.config
        for _ in range(MAX_TEARDOWN_ROUNDS):
            state = await self._zone_state(vm)
            try:
                if state is None:
                    return
                if state in ("running", "ready"):
                    await self._stop(vm)
                elif state in ("shutting_down", "down"):
                    await asyncio.sleep(c.poll_interval)
                elif state in ("installed", "incomplete"):
                    await self._run(c.zoneadm, "-z", vm, "uninstall", "-F")
                elif state == "configured":
                    await self._run(c.zonecfg, "-z", vm, "delete", "-F")
                elif state == "mounted":
                    await self._run(c.zoneadm, "-z", vm, "unmount")
            except CommandFailed as err:
                # Someone else (a concurrent destroy, reconciliation, the guest
                # powering off) may have moved the zone on; look again.
                log.info("teardown step failed; re-reading the zone state",
                         extra={"fields": {"vm": vm, "error": str(err)}})
        raise DriverError(f"VM {vm}: the zone did not go away after {MAX_TEARDOWN_ROUNDS} teardown steps")

    async def _cleanup_after_failure(self, vm: str) -> None:
        try:
            await self.destroy(vm)
        except DriverError as err:
            log.error("cleanup after a failed provision failed; reconciliation will retry",
                      extra={"fields": {"vm": vm, "error": str(err)}})

    async def _tolerate(self, gone: str, *argv: str) -> None:
        result = await self._run(*argv, check=False)
        if result.exit_code != 0 and gone not in result.stderr:
            raise CommandFailed(result.argv, result.exit_code, result.stderr)

    async def _zone_state(self, vm: str) -> str | None:
        result = await self._run(self.config.zoneadm, "-z", vm, "list", "-p", check=False)
        if result.exit_code != 0:
            if GONE_ZONE in result.stderr:
                return None
            raise CommandFailed(result.argv, result.exit_code, result.stderr)
        for line in result.stdout.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[1] == vm:
                return fields[2]
        return None

    # -- reconciliation and reports -----------------------------------------
    async def list_owned(self) -> set[str]:
        c = self.config
        owned: set[str] = set()
        zones = await self._run(c.zoneadm, "list", "-cp")
        for line in zones.stdout.splitlines():
            fields = line.split(":")
            if len(fields) >= 2 and is_vm_name(fields[1]):
                owned.add(fields[1])
        vnics = await self._run(c.dladm, "show-vnic", "-p", "-o", "link")
        owned.update(vm for vm in map(vm_of_vnic, vnics.stdout.split()) if vm)
        for parent in (c.vm_dataset, c.zones_dataset):
            result = await self._run(c.zfs, "list", "-H", "-o", "name", "-t", "filesystem,volume",
                                     "-d", "1", parent, check=False)
            if result.exit_code != 0:
                if GONE_DATASET in result.stderr:
                    continue
                raise CommandFailed(result.argv, result.exit_code, result.stderr)
            for line in result.stdout.splitlines():
                if line.startswith(parent + "/") and is_vm_name(line[len(parent) + 1:]):
                    owned.add(line[len(parent) + 1:])
        with contextlib.suppress(OSError):
            owned.update(p.name for p in c.state_dir.iterdir() if is_vm_name(p.name))
        return owned

    async def console_tail(self, name: str, lines: int = 50) -> str:
        vm = validate_vm_name(name)
        zonepath = self._host(self._zonepath(vm))
        parts = []
        for title, path in (
            ("guest console", self._state(vm) / "console.log"),
            ("bhyve init.log", zonepath / "root" / "tmp" / "init.log"),
            ("zone.log", zonepath / "log" / "zone.log"),
        ):
            text = await asyncio.to_thread(tail_file, path, lines)
            if text.strip():
                parts.append(f"--- {title} ---\n{text}")
        return "\n".join(parts)

    # -- console capture tasks ---------------------------------------------
    def _start_console(self, vm: str) -> None:
        old = self._consoles.pop(vm, None)
        if old is not None:
            old.cancel()
        sock = self._host(self._zonepath(vm)) / "root" / CONSOLE_SOCKET.lstrip("/")
        out = self._state(vm) / "console.log"
        self._consoles[vm] = asyncio.create_task(
            capture_console(sock, out, connect_within=60.0), name=f"console {vm}"
        )

    async def _settle_console(self, vm: str, timeout: float) -> None:
        task = self._consoles.get(vm)
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)

    async def _stop_console(self, vm: str) -> None:
        task = self._consoles.pop(vm, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def aclose(self) -> None:
        for vm in list(self._consoles):
            await self._stop_console(vm)


def _write_private(directory: Path, name: str, text: str) -> None:
    """Write a root-only file (the user-data holds the job token)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
