"""The bhyve driver: each job attempt in its own bhyve branded zone on a ZFS clone.

Per VM ``solstice-<hex>-<attempt>`` (names.py), following illumos.md:

    prepare   (disk_size >= the image's volsize, once per image)
              lease the guest's address from its link's pool (state store)
              zfs clone <image>@<snap> <vm_dataset>/<vm>   [zfs set volsize=... ]
              (wait for /dev/zvol/rdsk/<vm_dataset>/<vm>)
              dladm create-vnic -t -l <link> <vnic>
              zonecfg -z <vm> -f <state_dir>/<vm>/zonecfg    (bhyve_zonecfg.py)
              zoneadm -z <vm> install                        (the brand requires it, §1.2)
              [<zonepath>/etc/ipf.conf, ipf6.conf]           (egress: runner, bhyve_net.py)
    boot      user-data still there? start the console capture; zoneadm -z <vm> boot
    wait      the runner calls in; meanwhile the zone's state, init.log and the
              console are watched for a boot that cannot succeed (bhyve_guest.py)
    stop      bhyvectl --vm=<vm> --force-poweroff; zoneadm halt if needed (bhyve_zone.py)
    destroy   the §7 loop on the zone's state (halt / uninstall -F / delete -F),
              dladm delete-vnic, zfs destroy -r <zones_dataset>/<vm>, zfs destroy <disk>,
              release the address

The runner's bootstrap travels as NoCloud user-data (§6.2 option A), written
root-only to ``<state_dir>/<vm>/user-data`` and named by the ``cloud-init``
attribute. The driver runs as root: zonepaths are 0700 root, and it reads the
console socket and bhyve's logs inside them (docs/illumos.md "Privileges").
Every step of teardown treats "already gone" as success, so destroy is
idempotent and may race with another destroy or with reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.keyedlocks import KeyedLocks
from orchestrator.caches.zfs import ZfsCaches
from orchestrator.catalog import BhyveConfig, ImageEntry
from orchestrator.catalog import size_bytes as catalog_size
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve_console import ConsoleCapture, tail_file
from orchestrator.drivers.bhyve_guest import check_user_data, diagnose, render_guest_user_data, timeout_reason
from orchestrator.drivers.bhyve_net import egress_rules, guest_network
from orchestrator.drivers.bhyve_zone import GONE, ZoneTools
from orchestrator.drivers.bhyve_zonecfg import CONSOLE_SOCKET, ZoneConfig, render_zonecfg
from orchestrator.drivers.errors import (
    BootFailed,
    BootTimeout,
    CommandFailed,
    DriverError,
    ProvisionError,
    VmDied,
)
from orchestrator.names import is_vm_name, validate_vm_name, vm_of_vnic, vnic_name

if TYPE_CHECKING:
    from orchestrator.store import Store

log = logging.getLogger(__name__)

GONE_DATASET = "dataset does not exist"
GONE_LINK = "invalid link name"
CONSOLE_SETTLE_SECONDS = 2.0
# What zfs clone, dladm create-vnic and zonecfg say when the name is taken.
LEFTOVER = ("dataset already exists", "object already exists", "Zone exists")
_SIZE_UNITS = {"": 2**20, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def size_bytes(size: str, default_unit: str = "") -> int:
    """``N[KMGT]`` in bytes; no suffix means MiB (bhyve's ram) unless ``default_unit`` says otherwise."""
    unit = size[-1] if size[-1].isalpha() else default_unit
    return int(size.rstrip("KMGT")) * _SIZE_UNITS[unit]


class BhyveDriver:
    """Driver for illumos hosts with the OmniOS bhyve brand (see module docstring)."""

    name = "bhyve"

    def __init__(self, config: BhyveConfig) -> None:
        self.config = config
        self.zones = ZoneTools(config)
        self._consoles: dict[str, asyncio.Task[None]] = {}
        self._locks = KeyedLocks()  # stop and destroy of one VM never interleave
        self._active: set[str] = set()  # VMs this process provisioned and has not destroyed
        self._image_problems: dict[str, str | None] = {}
        self._store: Store | None = None  # for address leases (attach_store)
        self._host = ""
        self.caches = ZfsCaches(self.zones.run, config.zfs, config.cache_dataset, config.cache_volume_size,
                                catalog_size(config.cache_max_repo_bytes)) if config.cache_dataset else None

    def attach_store(self, store: Store, host: str) -> None:
        """Lease guest addresses in ``store`` as node ``host`` (serve.py calls this once the store is open)."""
        self._store, self._host = store, host

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

    def _host_path(self, path: str) -> Path:
        return self.config.fs_root / path.lstrip("/")

    # -- lifecycle -----------------------------------------------------------
    async def prepare(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        image = self.config.images.get(spec.label)
        if image is None:
            raise ProvisionError(f"no bhyve image serves runs_on label {spec.label!r}")
        problem = await self._image_problem(spec.label, image)
        if problem:
            raise ProvisionError(f"image {spec.label} is refused: {problem}")
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
            except (DriverError, ValueError) as err:
                await self._cleanup_after_failure(vm)
                raise ProvisionError(f"could not prepare VM {vm}: {err}") from err

    async def _image_problem(self, label: str, image: ImageEntry) -> str | None:
        """Checked once per image: a ``disk_size`` below the golden volume's would shrink the clone."""
        if label not in self._image_problems:
            problem = None
            if image.disk_size:
                result = await self.zones.run(self.config.zfs, "get", "-Hp", "-o", "value", "volsize",
                                              image.source, check=False)
                volsize = result.stdout.strip()
                if result.ok and volsize.isdigit() and size_bytes(image.disk_size, "B") < int(volsize):
                    problem = (f"disk_size {image.disk_size} is smaller than the image's volsize "
                               f"({int(volsize) / 2**30:g} GiB); zfs would shrink the clone")
                if problem:
                    log.error("%s", problem, extra={"fields": {"image": label}})
            self._image_problems[label] = problem
        return self._image_problems[label]

    async def _prepare(self, vm: str, spec: VmSpec, image: ImageEntry) -> None:
        c = self.config
        link = c.links[image.link]
        address = await self._lease(vm, image)
        net = guest_network(link, address)
        disk = self._disk(vm)
        run = self.zones.run
        await run(c.zfs, "clone", image.source, disk)
        if image.disk_size:
            await run(c.zfs, "set", f"volsize={image.disk_size}", disk)
        await self._wait_for_zvol(disk)
        cache_disks: list[str] = []
        if self.caches is not None and spec.caches and spec.cache_scope is not None:
            cache_disks = await self.caches.prepare(vm, spec.job_id, spec.attempt, spec.cache_scope, spec.caches)
            for cache_disk in cache_disks:
                await self._wait_for_zvol(cache_disk)
        vnic = vnic_name(vm)
        await run(c.dladm, "create-vnic", "-t", "-l", image.link, vnic)
        state = self._state(vm)
        await asyncio.to_thread(_write_private, state, "user-data",
                                render_guest_user_data(vm, spec.bootstrap))
        zonecfg = render_zonecfg(ZoneConfig(
            zone=vm, zonepath=self._zonepath(vm), vnic=vnic, disk=disk, vcpus=image.vcpus, ram=image.ram,
            user_data=str(state / "user-data"), bootrom=image.rom, memreserve=image.memreserve,
            address=net.address, gateway=net.gateway, resolvers=net.resolvers, dns_domain=net.dns_domain,
            cache_disks=tuple(cache_disks),
        ))
        await asyncio.to_thread(_write_private, state, "zonecfg", zonecfg)
        await run(c.zonecfg, "-z", vm, "-f", str(state / "zonecfg"))
        await run(c.zoneadm, "-z", vm, "install")
        if image.egress == "runner":
            v4, v6 = egress_rules(vm, spec.bootstrap.orchestrator, link)
            etc = self._host_path(self._zonepath(vm)) / "etc"
            await asyncio.to_thread(_write_private, etc, "ipf.conf", v4)
            await asyncio.to_thread(_write_private, etc, "ipf6.conf", v6)

    async def _lease(self, vm: str, image: ImageEntry) -> str | None:
        link = self.config.links[image.link]
        if link.dhcp:
            return None
        if self._store is None:
            raise DriverError(f"link {image.link} has an address pool but no state store is attached to lease from")
        address = await self._store.lease_address(link.name, self._host, vm, link.candidates())
        if address is None:
            raise DriverError(f"address pool {link.name} of link {image.link} has no free address")
        return address

    async def _wait_for_zvol(self, disk: str) -> None:
        """Whether a clone's device node exists when ``zfs clone`` returns is
        UNCONFIRMED (illumos.md §4); the boot hook needs it, so wait for it."""
        node = f"/dev/zvol/rdsk/{disk}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.zvol_timeout
        while not await asyncio.to_thread(self._host_path(node).exists):
            if loop.time() >= deadline:
                raise DriverError(f"{node} did not appear within {self.config.zvol_timeout:g}s of the clone")
            await asyncio.sleep(min(self.config.poll_interval, 0.1))

    async def boot(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        # The brand silently boots with user-data of its own when the file is
        # gone (boot.py); the job would only time out. Say why, now.
        problem = await asyncio.to_thread(check_user_data, self._state(vm) / "user-data")
        if problem:
            await self._cleanup_after_failure(vm)
            raise ProvisionError(f"could not boot VM {vm}: the user-data {problem}")
        self._start_console(vm)  # before boot: bhyve drops output until someone is connected
        try:
            await self.zones.run(self.config.zoneadm, "-z", vm, "boot")
        except DriverError as err:
            tail = await self.console_tail(vm)
            await self._cleanup_after_failure(vm)
            raise ProvisionError(f"could not boot VM {vm}: {err}", tail) from err

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        vm = validate_vm_name(spec.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                console = await asyncio.to_thread(tail_file, self._state(vm) / "console.log", 2000)
                raise BootTimeout(vm, timeout, await self.console_tail(vm),
                                  timeout_reason(vm, console, spec.bootstrap.orchestrator))
            try:
                await asyncio.wait_for(ready.wait(), min(remaining, self.config.poll_interval))
                return
            except asyncio.TimeoutError:
                pass
            # "running" only means bhyve started (§6.4); a zone that fell back
            # to installed means bhyve or the guest stopped.
            state = await self.zones.state(vm)
            if ready.is_set():
                return
            if state == "running":
                why = await asyncio.to_thread(self._diagnose, vm)
                if why:
                    raise BootFailed(vm, why, await self.console_tail(vm))
            elif state not in (None, "shutting_down", "down"):
                # bhyve is gone, so the console socket closes: let the capture
                # write the guest's last words before the tail is read.
                await self._settle_console(vm, CONSOLE_SETTLE_SECONDS)
                why = await asyncio.to_thread(self._diagnose, vm)
                detail = f"zone is {'gone' if state == GONE else state}" + (f": {why}" if why else "")
                raise VmDied(vm, detail, await self.console_tail(vm))

    def _diagnose(self, vm: str) -> str | None:
        zonepath = self._host_path(self._zonepath(vm))
        return diagnose(vm, tail_file(zonepath / "root" / "tmp" / "init.log", 200),
                        tail_file(self._state(vm) / "console.log", 2000))

    async def stop(self, name: str) -> None:
        vm = validate_vm_name(name)
        async with self._locks.hold(vm):
            await self.zones.stop(vm)
            await self._stop_console(vm)

    async def destroy(self, name: str) -> None:
        vm = validate_vm_name(name)
        async with self._locks.hold(vm):
            await self._destroy(vm)

    async def _destroy(self, vm: str) -> None:
        c = self.config
        await self.zones.remove(vm)
        await self._stop_console(vm)
        await self.zones.tolerate(GONE_LINK, c.dladm, "delete-vnic", vnic_name(vm))
        await self.zones.tolerate(GONE_DATASET, c.zfs, "destroy", "-r", self._zonepath_dataset(vm))
        await self.zones.tolerate(GONE_DATASET, c.zfs, "destroy", self._disk(vm))
        if self.caches is not None:  # the zone is gone: its cache disks are free to save or destroy
            await self.caches.finish(vm)
        await asyncio.to_thread(shutil.rmtree, self._state(vm), True)
        if self._store is not None:  # last: the address is free only once nothing uses it
            await self._store.release_address(self._host, vm)
        self._active.discard(vm)

    async def _cleanup_after_failure(self, vm: str) -> None:
        try:
            await self.destroy(vm)
        except DriverError as err:
            log.error("cleanup after a failed provision failed; reconciliation will retry",
                      extra={"fields": {"vm": vm, "error": str(err)}})

    # -- reconciliation and reports -----------------------------------------
    async def list_owned(self) -> set[str]:
        """Every Solstice VM of this host: zones, VNICs, datasets, state directories, address leases.

        Running zones without a console capture (a restarted orchestrator)
        get one again here, so their console keeps being recorded.
        """
        c = self.config
        owned: set[str] = set()
        # Four independent reads: at once (reconciliation runs this on a timer, and at start-up).
        zones, vnics, *children = await _all(
            self.zones.run(c.zoneadm, "list", "-cp"),
            self.zones.run(c.dladm, "show-vnic", "-p", "-o", "link"),
            *(self._vms_under(parent) for parent in (c.vm_dataset, c.zones_dataset)),
        )
        for line in zones.stdout.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and is_vm_name(fields[1]):
                owned.add(fields[1])
                if fields[2] == "running" and fields[1] not in self._consoles:
                    self._start_console(fields[1])
        owned.update(vm for vm in map(vm_of_vnic, vnics.stdout.split()) if vm)
        for names in children:
            owned |= names
        if self.caches is not None:
            owned.update(vm for vm in map(self.caches.vm_of_disk, await self.caches.vm_disks())
                         if vm and is_vm_name(vm))
        with contextlib.suppress(OSError):
            owned.update(p.name for p in c.state_dir.iterdir() if is_vm_name(p.name))
        if self._store is not None:  # an address leased by a process killed before it made anything
            owned.update(lease.vm_name for lease in await self._store.address_leases(host=self._host)
                         if is_vm_name(lease.vm_name))
        return owned

    async def _vms_under(self, parent: str) -> set[str]:
        """The Solstice VMs among the direct children of dataset ``parent`` (none if it is gone)."""
        result = await self.zones.run(self.config.zfs, "list", "-H", "-o", "name", "-t", "filesystem,volume",
                                      "-d", "1", parent, check=False)
        if result.exit_code != 0:
            if GONE_DATASET in result.stderr:
                return set()
            raise CommandFailed(result.argv, result.exit_code, result.stderr)
        return {line[len(parent) + 1:] for line in result.stdout.splitlines()
                if line.startswith(parent + "/") and is_vm_name(line[len(parent) + 1:])}

    async def console_tail(self, name: str, lines: int = 50) -> str:
        vm = validate_vm_name(name)
        zonepath = self._host_path(self._zonepath(vm))
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
        sock = self._host_path(self._zonepath(vm)) / "root" / CONSOLE_SOCKET.lstrip("/")
        self._state(vm).mkdir(parents=True, exist_ok=True, mode=0o700)
        capture = ConsoleCapture(sock, self._state(vm) / "console.log")
        self._consoles[vm] = asyncio.create_task(capture.run(), name=f"console {vm}")

    async def _settle_console(self, vm: str, timeout: float) -> None:
        """Give the capture up to ``timeout`` s to copy what bhyve wrote before it went away."""
        path = self._state(vm) / "console.log"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        size = -1
        while loop.time() < deadline:
            now = await asyncio.to_thread(lambda: path.stat().st_size if path.exists() else 0)
            if now == size:
                return
            size = now
            await asyncio.sleep(0.2)

    async def _stop_console(self, vm: str) -> None:
        task = self._consoles.pop(vm, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def aclose(self) -> None:
        for vm in list(self._consoles):
            await self._stop_console(vm)


async def _all(*calls: Awaitable[Any]) -> list[Any]:
    """Await ``calls`` together; if one fails, cancel and await the rest, then raise its error
    (as it is: callers handle a ``DriverError``, not an ``ExceptionGroup``)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _write_private(directory: Path, name: str, text: str) -> None:
    """Write a root-only file (the user-data holds the job token)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
