"""A bootable raw disk from a root file system tree, without mounting anything.

Layout (GPT, 1 MiB aligned)::

    p1  EFI system partition (FAT)   systemd-boot as the removable-media loader
                                     (EFI/BOOT/BOOTX64.EFI), the kernel and initrd
    p2  root (ext4, "discoverable partitions" x86-64 root type)

The file systems are built as files (``mkfs.vfat -C`` + ``mcopy``;
``mkfs.ext4 -d`` populates ext4 from a directory) and copied into the disk
at their offsets, so building an image needs no loop devices, no mounts and
no privileges beyond reading the tree. The result boots under any UEFI
firmware: bhyve's ``BHYVE_RELEASE`` bootrom on illumos, OVMF under QEMU.
Every command goes through ``orchestrator.commands.run_command``.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from orchestrator.commands import run_command

MIB = 1024 * 1024
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # x86-64 root (Discoverable Partitions Spec)
ESP_MIB = 128
ALIGN_MIB = 1
GPT_TAIL_MIB = 1  # the backup GPT at the end of the disk
SYSTEMD_BOOT = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
TIMEOUT = 600.0


@dataclass(frozen=True)
class BootEntry:
    """What the boot loader starts: kernel and initrd (paths inside the tree) and the command line."""

    kernel: str
    initrd: str
    options: str


@dataclass(frozen=True)
class DiskLayout:
    """Offsets and sizes of the partitions of a disk of ``size`` bytes."""

    size: int
    esp_offset: int
    esp_size: int
    root_offset: int
    root_size: int

    @classmethod
    def for_size(cls, size: int) -> DiskLayout:
        root_offset = (ALIGN_MIB + ESP_MIB) * MIB
        root_size = size - root_offset - GPT_TAIL_MIB * MIB
        if root_size < 64 * MIB:
            raise ValueError(f"a disk of {size // MIB} MiB is too small (at least {ESP_MIB + 66} MiB)")
        return cls(size, ALIGN_MIB * MIB, ESP_MIB * MIB, root_offset, root_size)

    def sfdisk_script(self, root_uuid: str) -> str:
        sector = 512
        return (
            "label: gpt\nunit: sectors\n"
            f"start={self.esp_offset // sector}, size={self.esp_size // sector}, type={ESP_TYPE}, name=\"esp\"\n"
            f"start={self.root_offset // sector}, size={self.root_size // sector}, type={ROOT_TYPE}, "
            f"uuid={root_uuid}, name=\"root\"\n"
        )


def find_kernel(tree: Path) -> BootEntry:
    """The newest kernel and its initrd under ``tree/boot`` (Debian's names)."""
    kernels = sorted((tree / "boot").glob("vmlinuz-*"), key=_version_key)
    if not kernels:
        raise FileNotFoundError(f"no kernel (boot/vmlinuz-*) in {tree}: the recipe must install one")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = tree / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise FileNotFoundError(f"no initrd for kernel {version} in {tree}/boot")
    return BootEntry(f"boot/vmlinuz-{version}", f"boot/initrd.img-{version}", "")


def _version_key(path: Path) -> list[object]:
    """``vmlinuz-6.1.0-10`` after ``vmlinuz-6.1.0-9``: numbers compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


async def build_disk(tree: Path, out: Path, size: int, cmdline: str, work: Path) -> str:
    """Write a bootable raw disk of ``size`` bytes holding ``tree`` to ``out``.

    ``cmdline`` is the kernel command line without ``root=``. Returns the
    root file system's UUID (also in ``root=`` and in the tree's fstab).
    """
    layout = DiskLayout.for_size(size)
    fs_uuid = str(uuid.uuid4())
    part_uuid = str(uuid.uuid4())
    entry = find_kernel(tree)
    work.mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "fstab").write_text(
        f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    esp = work / "esp.img"
    root = work / "root.img"
    await _build_esp(tree, esp, layout.esp_size, entry, f"root=UUID={fs_uuid} ro {cmdline}".strip(), work)
    await _run("mkfs.ext4", "-q", "-F", "-L", "root", "-U", fs_uuid, "-E", "root_owner=0:0",
               "-d", str(tree), str(root), f"{layout.root_size // 1024}k")
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        f.truncate(size)
    await _run("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(tmp),
               input=layout.sfdisk_script(part_uuid).encode())
    copy_sparse(esp, tmp, layout.esp_offset)
    copy_sparse(root, tmp, layout.root_offset)
    esp.unlink()
    root.unlink()
    os.replace(tmp, out)
    return fs_uuid


async def _build_esp(tree: Path, esp: Path, size: int, entry: BootEntry, options: str, work: Path) -> None:
    loader = tree / SYSTEMD_BOOT
    if not loader.is_file():
        raise FileNotFoundError(f"no {SYSTEMD_BOOT} in the tree: the recipe must install systemd-boot-efi")
    conf = work / "loader.conf"
    conf.write_text("default solstice.conf\ntimeout 0\n")
    entry_conf = work / "solstice.conf"
    entry_conf.write_text(f"title Solstice CI guest\nlinux /vmlinuz\ninitrd /initrd.img\noptions {options}\n")
    esp.unlink(missing_ok=True)
    await _run("mkfs.vfat", "-C", "-n", "ESP", str(esp), str(size // 1024))
    img = ["-i", str(esp)]
    await _run("mmd", *img, "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries")
    for src, dst in ((loader, "::/EFI/BOOT/BOOTX64.EFI"), (conf, "::/loader/loader.conf"),
                     (entry_conf, "::/loader/entries/solstice.conf"),
                     (tree / entry.kernel, "::/vmlinuz"), (tree / entry.initrd, "::/initrd.img")):
        await _run("mcopy", *img, str(src), dst)


def copy_sparse(src: Path, dst: Path, offset: int, block: int = MIB) -> None:
    """Copy ``src`` into ``dst`` at ``offset``, skipping all-zero blocks (``dst`` is sparse)."""
    zero = bytes(block)
    with open(src, "rb") as i, open(dst, "r+b") as o:
        position = offset
        while chunk := i.read(block):
            if chunk != zero[: len(chunk)]:
                o.seek(position)
                o.write(chunk)
            position += len(chunk)


async def _run(*argv: str, input: bytes | None = None) -> None:  # noqa: A002
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    await run_command(argv, timeout=TIMEOUT, input=input, env=env)
