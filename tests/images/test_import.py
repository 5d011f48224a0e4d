"""``solstice-image import`` through the fake illumos toolchain (tests/fakes/illumos/)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from images.build import BuiltImage, sha256_file
from images.importer import ImportError_, ImportPlan, import_image
from orchestrator.drivers.check import load_driver_config
from tests.fakes.illumos.host import FakeHost

DATASET = "rpool/solstice/images/debian-12"
CLI = str(Path(sys.executable).parent / "solstice-image")


def built_image(tmp_path: Path, version: str, fill: bytes) -> tuple[Path, BuiltImage]:
    raw = tmp_path / f"debian-12-{version}.raw"
    with open(raw, "wb") as f:
        f.truncate(4 << 20)
        f.seek(1 << 20)
        f.write(fill * 4096)  # data in the middle, holes around it
    built = BuiltImage("debian-12", version, str(raw), sha256_file(raw), raw.stat().st_size, 0, "0.1.0", "uefi",
                       "linux", "ab" * 32, 1.0)
    built.write(raw.with_suffix(".json"))
    return raw, built


def plan(host: FakeHost, raw: Path, built: BuiltImage, **kw) -> ImportPlan:
    return ImportPlan(image=raw, built=built, dataset=DATASET, label="debian-12", zfs=host.tool("zfs"),
                      dev_root=host.fs("/"), **kw)


def zfs_calls(host: FakeHost) -> list[list[str]]:
    return [c[1:] for c in host.calls() if c[0] == "zfs" and c[1] in ("create", "snapshot", "set")]


async def test_import_creates_writes_and_snapshots_the_volume(fake_host: FakeHost, tmp_path: Path):
    raw, built = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    result = await import_image(plan(fake_host, raw, built, link="igb0"), None)
    assert result.snapshot == f"{DATASET}@20261201-1a2b3c4d"
    assert zfs_calls(fake_host) == [["create", "-p", "-V", str(4 << 20), DATASET],
                                    ["snapshot", f"{DATASET}@20261201-1a2b3c4d"],
                                    ["set", f"solstice:runner-version={built.runner_version}",
                                     f"{DATASET}@20261201-1a2b3c4d"]]
    # what `solstice-orchestrator check` reads to name the runner an image holds
    shown = subprocess.run([fake_host.tool("zfs"), "get", "-Hp", "-o", "value", "solstice:runner-version",
                            f"{DATASET}@20261201-1a2b3c4d"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == built.runner_version
    datasets = fake_host.state()["datasets"]
    assert datasets[DATASET]["type"] == "volume" and datasets[DATASET]["volsize"] == 4 << 20
    assert datasets[f"{DATASET}@20261201-1a2b3c4d"]["type"] == "snapshot"
    node = fake_host.fs(f"/dev/zvol/rdsk/{DATASET}")
    assert node.read_bytes().rstrip(b"\0").lstrip(b"\0") == b"A" * 4096
    assert yaml.safe_load(result.entry_text) == {"images": {"debian-12": {
        "dataset": DATASET, "snapshot": "20261201-1a2b3c4d", "link": "igb0"}}}


async def test_rolling_forward_keeps_the_old_snapshot_and_its_clones(fake_host: FakeHost, tmp_path: Path):
    raw1, built1 = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    await import_image(plan(fake_host, raw1, built1), None)
    vm_disk = "rpool/solstice/vms/solstice-0badcafe-1"
    subprocess.run([fake_host.tool("zfs"), "clone", "-p", f"{DATASET}@20261201-1a2b3c4d", vm_disk], check=True)
    raw2, built2 = built_image(tmp_path, "20261215-5e6f7a8b", b"B")
    fake_host.clear_calls()
    await import_image(plan(fake_host, raw2, built2), None)
    assert zfs_calls(fake_host) == [["snapshot", f"{DATASET}@20261215-5e6f7a8b"],  # the volume is reused
                                    ["set", f"solstice:runner-version={built2.runner_version}",
                                     f"{DATASET}@20261215-5e6f7a8b"]]
    datasets = fake_host.state()["datasets"]
    assert {f"{DATASET}@20261201-1a2b3c4d", f"{DATASET}@20261215-5e6f7a8b", vm_disk} <= set(datasets)
    assert datasets[vm_disk]["origin"] == f"{DATASET}@20261201-1a2b3c4d"
    # The whole image was written over the previous version (holes included).
    assert fake_host.fs(f"/dev/zvol/rdsk/{DATASET}").read_bytes() == raw2.read_bytes()


async def test_the_same_version_twice_is_refused(fake_host: FakeHost, tmp_path: Path):
    raw, built = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    await import_image(plan(fake_host, raw, built), None)
    fake_host.clear_calls()
    with pytest.raises(ImportError_, match="already exists: this image version is imported already"):
        await import_image(plan(fake_host, raw, built), None)
    assert zfs_calls(fake_host) == []


@pytest.mark.parametrize("dataset, label", [("rpool/bad name/x", "debian-12"), ("-rpool/x", "debian-12"),
                                            ("rpool/x@snap", "debian-12"), ("rpool/x", "no spaces")])
async def test_bad_names_are_refused_before_any_command(fake_host: FakeHost, tmp_path: Path, dataset: str,
                                                        label: str):
    raw, built = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    p = dataclasses.replace(plan(fake_host, raw, built), dataset=dataset, label=label)
    with pytest.raises(ImportError_):
        await import_image(p, None)
    assert fake_host.calls() == []


async def test_a_changed_image_file_is_refused(fake_host: FakeHost, tmp_path: Path):
    raw, built = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    with open(raw, "r+b") as f:
        f.write(b"corrupt")
    with pytest.raises(ImportError_, match="does not match the sha256"):
        await import_image(plan(fake_host, raw, built), None)
    assert fake_host.calls() == []


async def test_the_catalog_is_updated_and_stays_valid(fake_host: FakeHost, tmp_path: Path):
    catalog = tmp_path / "orchestrator.yaml"
    catalog.write_text(yaml.safe_dump({"drivers": {"driver": "bhyve", "bhyve": {
        "links": {"igb0": {"dhcp": True}},
        "images": {"debian-12": {"dataset": DATASET, "snapshot": "old", "vcpus": 4, "ram": "8G", "link": "igb0"}}}}}))
    raw, built = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    result = await import_image(plan(fake_host, raw, built), catalog)
    entry = load_driver_config(catalog, env={}).bhyve.images["debian-12"]
    assert (entry.source, entry.vcpus, entry.ram, entry.link) == (f"{DATASET}@20261201-1a2b3c4d", 4, "8G", "igb0")
    assert result.entry["vcpus"] == 4  # what the operator had set stays


async def test_a_new_label_needs_its_link(fake_host: FakeHost, tmp_path: Path):
    catalog = tmp_path / "orchestrator.yaml"
    catalog.write_text("drivers:\n  driver: bhyve\n")
    raw, built = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    with pytest.raises(ImportError_, match="is new in .*give --link"):
        await import_image(plan(fake_host, raw, built), catalog)
    assert catalog.read_text() == "drivers:\n  driver: bhyve\n"


def test_the_cli_prints_the_entry_or_one_error_line(fake_host: FakeHost, tmp_path: Path):
    raw, _ = built_image(tmp_path, "20261201-1a2b3c4d", b"A")
    argv = [CLI, "import", str(raw), "--dataset", DATASET, "--link", "igb0", "--zfs", fake_host.tool("zfs"),
            "--dev-root", str(fake_host.fs("/")), "--log-level", "warning"]
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(ok.stdout)["images"]["debian-12"]["snapshot"] == "20261201-1a2b3c4d"
    assert "zfs snapshot" in ok.stderr
    bad = subprocess.run([*argv[:4], "rpool/bad name", *argv[5:]], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["ERROR: 'rpool/bad name' is not a valid dataset name"]
