"""The qemu driver: each job attempt in a QEMU VM booted from its golden image (Linux hosts).

Per VM ``solstice-<hex>-<attempt>`` (names.py), in ``<state_dir>/<vm>/``:

    prepare   qemu-img create -f qcow2 -F raw -b <image> disk.qcow2   (copy-on-write overlay)
              the NoCloud seed (nocloud.py): seed/ and cidata.iso, as the bhyve brand builds it
    boot      qemu-system-x86_64 ... (qemu_command.py), console -> console.log; pid -> pid
    stop      SIGTERM, then SIGKILL after stop_grace (a CI VM is disposable)
    destroy   stop, then remove the directory (overlay, seed, token and all)

The image stays untouched: every write of a job lands in its overlay. The
runner's bootstrap is the same user-data the bhyve driver writes, so a
golden image boots the same way under both. A restarted orchestrator finds
its VMs again from the directories and kills a leftover QEMU only if the
pid's start time still matches the pid file (a recycled pid is never signalled).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from common.bootstrap import RunnerBootstrap, render_user_data
from orchestrator.catalog import QemuConfig
from orchestrator.commands import run_command
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve_console import tail_file
from orchestrator.drivers.errors import BootTimeout, DriverError, ProvisionError, VmDied
from orchestrator.drivers.nocloud import build_seed_iso
from orchestrator.drivers.process import kill_group, live_pid, wait_for_call_in, write_pid_file
from orchestrator.drivers.qemu_command import QemuVm, choose_accel, guest_view, qemu_argv, user_mode_seed
from orchestrator.names import is_vm_name, validate_vm_name

log = logging.getLogger(__name__)


class QemuDriver:
    """Driver that boots each job's golden image under QEMU (see module docstring)."""

    name = "qemu"

    def __init__(self, config: QemuConfig) -> None:
        self.config = config
        self.accel: str | None = None  # kvm or tcg, probed at the first boot
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    def serves(self, label: str) -> bool:
        return label in self.config.images

    def _dir(self, vm: str) -> Path:
        return self.config.state_dir / vm

    async def prepare(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        image = self.config.images.get(spec.label)
        if image is None:
            raise ProvisionError(f"no qemu image serves runs_on label {spec.label!r}")
        proc = self._procs.get(vm)
        if proc is not None and proc.returncode is None:
            raise ProvisionError(f"VM name {vm} is in use by a live job on this host")
        d = self._dir(vm)
        if d.exists():  # leftovers of this very VM (an orchestrator died provisioning it)
            await self.destroy(vm)
        try:
            d.mkdir(parents=True, mode=0o700)
            if not image.path.is_file():
                raise DriverError(f"image {image.path} does not exist (build it with solstice-image build)")
            c = self.config
            await run_command([c.qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.path),
                               str(d / "disk.qcow2")], timeout=c.command_timeout)
            boot = RunnerBootstrap(guest_view(spec.bootstrap.orchestrator), spec.bootstrap.token)
            seed = user_mode_seed(vm, render_user_data(boot))
            await build_seed_iso(seed, d / "seed", d / "cidata.iso", timeout=c.command_timeout)
            (d / "serial").write_text(seed.smbios_serial)
        except (DriverError, OSError) as err:
            await self.destroy(vm)
            raise ProvisionError(f"could not prepare VM {vm}: {err}") from err

    async def boot(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        image = self.config.images[spec.label]
        d = self._dir(vm)
        if self.accel is None:
            self.accel = await choose_accel(self.config.accel, self.config.qemu, self.config.firmware)
        qvm = QemuVm(vm, d / "disk.qcow2", d / "cidata.iso", d / "console.log", (d / "serial").read_text(),
                     image.vcpus, image.ram, image.bootrom, self.config.firmware, self.accel)
        argv = qemu_argv(self.config.qemu, qvm)
        try:
            with open(d / "qemu.log", "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv, cwd=str(d), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                    start_new_session=True)
        except OSError as err:
            await self.destroy(vm)
            raise ProvisionError(f"cannot start {argv[0]} for {vm}: {err.strerror}") from err
        self._procs[vm] = proc
        write_pid_file(d, proc.pid)
        log.info("VM started", extra={"fields": {"vm": vm, "pid": proc.pid, "accel": self.accel}})

    def _alive_pid(self, vm: str) -> int | None:
        """QEMU's pid if it is (still) the process we started."""
        return live_pid(self._procs.get(vm), self._dir(vm))

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        vm = validate_vm_name(spec.name)
        outcome = await wait_for_call_in(ready, timeout, self.config.poll_interval,
                                         lambda: self._alive_pid(vm) is not None)
        if outcome == "timeout":
            raise BootTimeout(vm, timeout, await self.console_tail(vm))
        if outcome == "died":
            proc = self._procs.get(vm)
            code = proc.returncode if proc is not None else None
            detail = "the guest powered off" if code == 0 else (
                f"qemu exited with status {code}: {await self._qemu_error(vm)}" if code is not None
                else "qemu is not running")
            raise VmDied(vm, detail, await self.console_tail(vm))

    async def _qemu_error(self, vm: str) -> str:
        text = await asyncio.to_thread(tail_file, self._dir(vm) / "qemu.log", 3)
        return " ".join(text.split()) or "no error output"

    async def stop(self, name: str) -> None:
        vm = validate_vm_name(name)
        pid = self._alive_pid(vm)
        if pid is not None and not await kill_group(pid, self.config.stop_grace, self._procs.get(vm),
                                                    lambda: self._alive_pid(vm) is not None):
            log.warning("qemu did not die after SIGKILL", extra={"fields": {"vm": vm, "pid": pid}})
        proc = self._procs.pop(vm, None)
        if proc is not None:
            await proc.wait()

    async def destroy(self, name: str) -> None:
        vm = validate_vm_name(name)
        await self.stop(vm)
        await asyncio.to_thread(shutil.rmtree, self._dir(vm), True)

    async def list_owned(self) -> set[str]:
        try:
            return {p.name for p in self.config.state_dir.iterdir() if is_vm_name(p.name)}
        except FileNotFoundError:
            return set()

    async def console_tail(self, name: str, lines: int = 50) -> str:
        vm = validate_vm_name(name)
        return await asyncio.to_thread(tail_file, self._dir(vm) / "console.log", lines)

    async def aclose(self) -> None:
        # VMs keep running (the orchestrator may be restarting); reconciliation reaps them.
        self._procs.clear()
