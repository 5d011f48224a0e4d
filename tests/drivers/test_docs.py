"""docs/illumos.md stays true: its examples are what the code loads, writes and prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from common.bootstrap import RunnerBootstrap, render_user_data
from common.config import load_config
from orchestrator.drivers.bhyve_zonecfg import ZoneConfig, render_zonecfg
from orchestrator.drivers.check import load_driver_config
from orchestrator.node.settings import NodeSettings
from tests.fakes.illumos.host import FakeHost

DOC = Path(__file__).resolve().parents[2] / "docs" / "illumos.md"
EXE = Path(sys.executable).parent / "solstice-orchestrator"
TOOLS = ("zonecfg", "zoneadm", "zfs", "dladm", "bhyvectl")
READ_ONLY = {("zoneadm", "list"), ("zfs", "list"), ("zfs", "get"), ("dladm", "show-link")}


def blocks(lang: str) -> list[str]:
    return [body for fence, body in re.findall(r"^```(\w*)\n(.*?)^```", DOC.read_text(), re.DOTALL | re.MULTILINE)
            if fence == lang]


def node_file(tmp_path: Path) -> Path:
    (doc,) = [b for b in blocks("yaml") if "drivers:" in b]
    path = tmp_path / "orchestrator.yaml"
    path.write_text(doc)
    return path


def test_the_node_file_example_loads_with_the_real_loaders(tmp_path: Path):
    path = node_file(tmp_path)
    settings = load_config(NodeSettings, path, env={})
    drivers = load_driver_config(path, env={})  # what `check` reads
    assert drivers == settings.drivers
    assert drivers.driver == "bhyve" and drivers.boot_timeout == 300
    images = drivers.bhyve.images
    assert sorted(images) == ["illumos-stable", "omnios-lts"]
    stable = images["illumos-stable"]
    assert (stable.source, stable.vcpus, stable.ram, stable.disk_size, stable.link) == (
        "rpool/solstice/images/illumos-stable@2026-11-01", 4, "8G", "40G", "igb0")
    assert images["omnios-lts"].source == "rpool/solstice/images/omnios-lts@r151054"
    assert str(drivers.bhyve.state_dir) == "/var/lib/solstice/bhyve"
    # Environment overrides, as documented.
    env = {"SOLSTICE_DRIVERS_BHYVE_VM_DATASET": "tank/ci/vms", "SOLSTICE_DRIVERS_DRIVER": "local"}
    overridden = load_driver_config(path, env=env)
    assert (overridden.driver, overridden.bhyve.vm_dataset) == ("local", "tank/ci/vms")


def test_the_user_data_example_is_what_the_driver_writes():
    (doc,) = [b for b in blocks("yaml") if b.startswith("#cloud-config")]
    rendered = render_user_data(RunnerBootstrap("10.0.0.5:50051", "eyJ.job.token"))
    assert doc == rendered.replace("eyJ.job.token", "<the job token>")


def test_the_zonecfg_example_is_what_the_driver_writes():
    (doc,) = [b for b in blocks("") if b.startswith("# Solstice CI job VM")]
    vm = "solstice-3f2a9c1e-1"
    assert doc == render_zonecfg(ZoneConfig(
        zone=vm, zonepath=f"/solstice/zones/{vm}", vnic="solstice3f2a9c1e_1", disk=f"rpool/solstice/vms/{vm}",
        vcpus=4, ram="8G", user_data=f"/var/lib/solstice/bhyve/{vm}/user-data"))


def test_the_check_sample_is_what_check_prints(fake_host: FakeHost, tmp_path: Path):
    """The doc's host: everything in place except the omnios-lts image, which is not imported."""
    fake_host.fs("/usr/lib/brand/bhyve").mkdir(parents=True)
    (sample,) = blocks("console")
    command, *expected = sample.splitlines()
    assert command == "$ solstice-orchestrator check --config /etc/solstice/orchestrator.yaml"
    env = dict(os.environ, SOLSTICE_DRIVERS_BHYVE_FS_ROOT=str(fake_host.root / "fs"),
               **{f"SOLSTICE_DRIVERS_BHYVE_{t.upper()}": fake_host.tool(t) for t in TOOLS})
    before = fake_host.state()
    r = subprocess.run([str(EXE), "check", "--config", str(node_file(tmp_path)), "--log-level", "warning"],
                       capture_output=True, text=True, timeout=60, env=env, check=False)
    out = r.stdout
    for tool in TOOLS:
        out = out.replace(fake_host.tool(tool), f"/usr/sbin/{tool}")
    assert r.returncode == 1, r.stderr
    assert out.splitlines() == expected
    after = fake_host.state()
    assert {k: after[k] for k in ("zones", "datasets", "links")} == \
        {k: before[k] for k in ("zones", "datasets", "links")}
    assert {tuple(c[:2]) for c in fake_host.calls()} <= READ_ONLY
