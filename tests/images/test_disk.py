"""The raw disk is assembled without mounting anything: GPT, an ESP that boots systemd-boot, ext4 root."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from images.disk import ESP_TYPE, MIB, ROOT_TYPE, DiskLayout, build_disk, find_kernel

SIZE = 256 * MIB


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for rel, data in {"boot/vmlinuz-6.1.0-9-amd64": b"KERNEL" * 1000, "boot/initrd.img-6.1.0-9-amd64": b"INITRD",
                      "boot/vmlinuz-6.1.0-10-amd64": b"NEWER", "boot/initrd.img-6.1.0-10-amd64": b"NEWINITRD",
                      "usr/lib/systemd/boot/efi/systemd-bootx64.efi": b"MZ-systemd-boot",
                      "etc/hostname": b"guest\n", "etc/solstice/image": b"debian-12@1\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def extract(disk: Path, offset: int, size: int, out: Path) -> Path:
    with open(disk, "rb") as i, open(out, "wb") as o:
        i.seek(offset)
        o.write(i.read(size))
    return out


async def test_the_disk_has_an_esp_with_the_loader_and_an_ext4_root(tmp_path: Path):
    src, disk = tree(tmp_path), tmp_path / "disk.raw"
    fs_uuid = await build_disk(src, disk, SIZE, "console=ttyS0", tmp_path / "work")
    assert disk.stat().st_size == SIZE
    assert disk.stat().st_blocks * 512 < SIZE // 2, "holes stay holes"
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    layout = DiskLayout.for_size(SIZE)
    assert table["label"] == "gpt"
    assert [(p["start"] * 512, p["size"] * 512, p["type"]) for p in table["partitions"]] == [
        (layout.esp_offset, layout.esp_size, ESP_TYPE), (layout.root_offset, layout.root_size, ROOT_TYPE)]

    esp = extract(disk, layout.esp_offset, layout.esp_size, tmp_path / "esp.img")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

    def esp_file(path: str) -> bytes:
        return subprocess.run(["mtype", "-i", str(esp), f"::{path}"], capture_output=True, check=True, env=env).stdout
    assert esp_file("/EFI/BOOT/BOOTX64.EFI") == b"MZ-systemd-boot"
    assert esp_file("/vmlinuz") == b"NEWER" and esp_file("/initrd.img") == b"NEWINITRD"  # the newest kernel
    entry = esp_file("/loader/entries/solstice.conf").decode()
    assert f"options root=UUID={fs_uuid} ro console=ttyS0" in entry
    assert "timeout 0" in esp_file("/loader/loader.conf").decode()

    root = extract(disk, layout.root_offset, layout.root_size, tmp_path / "root.img")

    def root_file(path: str) -> str:
        return subprocess.run(["debugfs", "-R", f"cat {path}", str(root)], capture_output=True, text=True,
                              check=True).stdout
    assert root_file("/etc/solstice/image") == "debian-12@1\n"
    assert root_file("/etc/fstab") == f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n"
    label = subprocess.run(["debugfs", "-R", "stats", str(root)], capture_output=True, text=True, check=True).stdout
    assert f"Filesystem UUID:          {fs_uuid}" in label


async def test_a_tree_without_a_kernel_or_loader_is_refused(tmp_path: Path):
    src = tree(tmp_path)
    (src / "usr/lib/systemd/boot/efi/systemd-bootx64.efi").unlink()
    with pytest.raises(FileNotFoundError, match="systemd-boot-efi"):
        await build_disk(src, tmp_path / "d.raw", SIZE, "", tmp_path / "w")
    for kernel in (src / "boot").glob("vmlinuz-*"):
        kernel.unlink()
    with pytest.raises(FileNotFoundError, match="no kernel"):
        find_kernel(src)
    with pytest.raises(ValueError, match="too small"):
        DiskLayout.for_size(100 * MIB)
