"""The QEMU command line of one VM, shared by the qemu driver and image provisioning.

The VM copies what the bhyve brand gives a guest, so an image behaves the
same under both: UEFI firmware (OVMF for bhyve's ``BHYVE_RELEASE``), a
virtio disk, a virtio NIC, COM1 as the console, the NoCloud CIDATA ISO on
an AHCI CD and the SMBIOS serial ``ds=nocloud;i=<uuid>`` with OmniOS as
manufacturer (illumos.md §6.1). Networking is QEMU's user mode (slirp):
the guest is ``10.0.2.15/24``, the host is reachable as ``10.0.2.2``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from orchestrator.drivers.nocloud import Seed, SeedNet
from orchestrator.names import validate_zone_name

GUEST_ADDRESS = "10.0.2.15/24"
HOST_ALIAS = "10.0.2.2"  # slirp's address for the host's loopback
DNS_ALIAS = "10.0.2.3"
NIC = "net0"  # the guest's interface (set-name); a VNIC-style name would pass IFNAMSIZ on Linux
LOOPBACK = ("127.0.0.1", "localhost", "0.0.0.0", "[::1]")


def kvm_usable(device: str = "/dev/kvm") -> bool:
    """True if this process can open ``device`` read-write (what QEMU's KVM accelerator needs)."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


_PROBED: dict[str, bool] = {}
PROBE_SECONDS = 3.0


async def kvm_works(qemu: str, firmware: Path) -> bool:
    """True if a KVM guest really runs here, not only if /dev/kvm opens.

    Nested or partial KVM implementations open fine and then fail the first
    instructions ("KVM internal error", an MSR QEMU cannot set), so the probe
    boots the firmware for a few seconds and watches QEMU's error output.
    The answer is kept for the life of the process.
    """
    if qemu in _PROBED:
        return _PROBED[qemu]
    ok = False
    if kvm_usable():
        argv = [qemu, "-machine", "q35,accel=kvm", "-cpu", "host", "-nodefaults", "-no-user-config",
                "-display", "none", "-m", "64", "-bios", str(firmware)]
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
        except OSError:
            proc = None
        if proc is not None:
            assert proc.stderr is not None
            try:
                await asyncio.wait_for(proc.stderr.read(1), PROBE_SECONDS)  # an error, or EOF at exit
            except TimeoutError:
                ok = True  # running and silent: the guest executes
            finally:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
    _PROBED[qemu] = ok
    return ok


async def choose_accel(setting: str, qemu: str, firmware: Path) -> str:
    """``kvm`` or ``tcg``: the setting, or with ``auto`` KVM where it works (``kvm_works``)."""
    if setting != "auto":
        return setting
    return "kvm" if await kvm_works(qemu, firmware) else "tcg"


def mac_for(name: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) for VM ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def user_mode_seed(name: str, user_data: str) -> Seed:
    """The NoCloud seed of VM ``name`` on QEMU's user-mode network (a fresh instance id)."""
    return Seed(instance_id=str(uuid.uuid4()), hostname=name, user_data=user_data,
                nets=(SeedNet(NIC, mac_for(name), GUEST_ADDRESS, HOST_ALIAS),), resolvers=(DNS_ALIAS,))


def guest_view(address: str) -> str:
    """The orchestrator's ``HOST:PORT`` as the guest must dial it: loopback becomes the slirp host alias."""
    host, _, port = address.rpartition(":")
    return f"{HOST_ALIAS}:{port}" if host in LOOPBACK else address


@dataclass(frozen=True)
class QemuVm:
    """Everything the command line of one VM depends on."""

    name: str
    disk: Path
    seed_iso: Path
    console: Path
    serial: str  # SMBIOS system serial (``ds=nocloud;i=<uuid>``)
    vcpus: int = 2
    ram: str = "2G"
    bootrom: str = "uefi"
    firmware: Path = Path("/usr/share/ovmf/OVMF.fd")
    accel: str = "tcg"
    disk_format: str = "qcow2"

    def __post_init__(self) -> None:
        validate_zone_name(self.name)
        if self.accel not in ("kvm", "tcg"):
            raise ValueError(f"accel {self.accel!r} is not kvm or tcg")
        for path in (self.disk, self.seed_iso, self.console):
            if "," in str(path):  # QEMU option syntax: a comma would start another option
                raise ValueError(f"{path}: QEMU cannot take a path with a comma")


def qemu_argv(qemu: str, vm: QemuVm) -> list[str]:
    """The argv that boots ``vm``; it runs in the foreground until the guest powers off."""
    cpu = "host" if vm.accel == "kvm" else "max"
    argv = [
        qemu, "-name", vm.name,
        "-machine", f"q35,accel={vm.accel}", "-cpu", cpu, "-smp", str(vm.vcpus), "-m", vm.ram,
        "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", f"file:{vm.console}",
        "-drive", f"file={vm.disk},if=virtio,format={vm.disk_format},cache=unsafe,discard=unmap",
        "-drive", f"file={vm.seed_iso},if=ide,index=2,media=cdrom,readonly=on,format=raw",
        "-smbios", f"type=1,manufacturer=OmniOS,product=OmniOS HVM,serial={vm.serial}",
        "-netdev", f"user,id=n0,net=10.0.2.0/24,host={HOST_ALIAS},dns={DNS_ALIAS}",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac_for(vm.name)}",
        "-device", "virtio-rng-pci",
        "-no-reboot",  # a guest that reboots is done: the VM ends like bhyve's
    ]
    if vm.bootrom == "uefi":
        argv += ["-bios", str(vm.firmware)]
    return argv
