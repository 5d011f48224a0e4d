"""docs/illumos.md stays true: its examples are what the code loads, writes and prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from common.bootstrap import RunnerBootstrap
from common.config import load_config
from orchestrator.drivers.bhyve_guest import render_guest_user_data
from orchestrator.drivers.bhyve_net import egress_rules
from orchestrator.drivers.bhyve_zonecfg import ZoneConfig, render_zonecfg
from orchestrator.drivers.check import NodeFacts, load_driver_config, load_node_facts
from orchestrator.node.settings import NodeSettings
from runner.agent import VERSION
from tests.fakes.illumos import state as st
from tests.fakes.illumos.host import FakeHost

DOC = Path(__file__).resolve().parents[2] / "docs" / "illumos.md"
EXE = Path(sys.executable).parent / "solstice-orchestrator"
TOOLS = ("zonecfg", "zoneadm", "zfs", "dladm", "bhyvectl")
HOST_TOOLS = ("kstat", "isainfo", "ping", "route", "ipf")
VM = "solstice-3f2a9c1e-1"
SOURCES = [Path(__file__).resolve().parents[2] / "orchestrator" / "drivers" / name
           for name in ("bhyve.py", "bhyve_guest.py", "bhyve_net.py", "errors.py")]


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
    assert (stable.source, stable.vcpus, stable.ram, stable.disk_size, stable.link, stable.egress, stable.rom) == (
        "rpool/solstice/images/illumos-stable@2026-11-01", 4, "8G", "40G", "ci0", "runner", "BHYVE_RELEASE")
    assert images["omnios-lts"].source == "rpool/solstice/images/omnios-lts@r151054"
    assert images["omnios-lts"].rom == "BHYVE_RELEASE_CSM"
    pool = drivers.bhyve.links["ci0"]
    assert (pool.cidr, pool.gateway, pool.candidates()[0], pool.resolvers) == (
        "10.9.0.0/24", "10.9.0.1", "10.9.0.10", ("10.9.0.1",))
    assert str(drivers.bhyve.state_dir) == "/var/lib/solstice/bhyve"
    assert load_node_facts(path, env={}) == NodeFacts(4, "10.9.0.1:50051")
    # Environment overrides, as documented.
    env = {"SOLSTICE_DRIVERS_BHYVE_VM_DATASET": "tank/ci/vms", "SOLSTICE_DRIVERS_DRIVER": "local"}
    overridden = load_driver_config(path, env=env)
    assert (overridden.driver, overridden.bhyve.vm_dataset) == ("local", "tank/ci/vms")


def test_the_user_data_example_is_what_the_driver_writes():
    (doc,) = [b for b in blocks("yaml") if b.startswith("#cloud-config")]
    rendered = render_guest_user_data(VM, RunnerBootstrap("10.9.0.1:50051", "eyJ.job.token"))
    assert doc == rendered.replace("eyJ.job.token", "<the job token>")


def test_the_zonecfg_example_is_what_the_driver_writes():
    (doc,) = [b for b in blocks("") if b.startswith("# Solstice CI job VM")]
    assert doc == render_zonecfg(ZoneConfig(
        zone=VM, zonepath=f"/solstice/zones/{VM}", vnic="solstice3f2a9c1e_1", disk=f"rpool/solstice/vms/{VM}",
        vcpus=4, ram="8G", user_data=f"/var/lib/solstice/bhyve/{VM}/user-data", bootrom="BHYVE_RELEASE",
        address="10.9.0.10/24", gateway="10.9.0.1", resolvers=("10.9.0.1",)))


def test_the_egress_example_is_what_the_driver_writes(tmp_path: Path):
    (doc,) = [b for b in blocks("") if b.startswith("# Solstice CI egress policy")]
    links = load_driver_config(node_file(tmp_path), env={}).bhyve.links
    assert doc == egress_rules(VM, "10.9.0.1:50051", links["ci0"])[0]


def doc_host(host: FakeHost) -> dict[str, str]:
    """The fake host set up as section 2 and 3 say (both images imported); the env pointing check at it."""
    host.fs("/usr/lib/brand/bhyve").mkdir(parents=True)
    host.fs("/usr/lib/brand/bhyve/boot").write_text("")
    host.fs("/dev").mkdir(parents=True, exist_ok=True)
    host.fs("/dev/vmmctl").write_text("")
    host.set_host(alive=["10.9.0.1"], freemem_pages=(48 << 30) // os.sysconf("SC_PAGE_SIZE"),
                  arc_size=6 << 30, arc_c_min=2 << 30)
    with st.locked(host.root) as state:
        state["links"]["ci0"] = {"class": "etherstub", "over": None, "vid": 0, "mac": "2:8:20:0:0:1",
                                 "macaddrtype": "random", "zone": None}
    zfs = host.tool("zfs")
    lts = "rpool/solstice/images/omnios-lts"
    for argv in (["create", "-V", "10G", lts], ["snapshot", f"{lts}@r151054"],
                 ["set", f"solstice:runner-version={VERSION}", lts],
                 ["set", f"solstice:runner-version={VERSION}", "rpool/solstice/images/illumos-stable"]):
        subprocess.run([zfs, *argv], check=True)
    env = dict(os.environ, SOLSTICE_DRIVERS_BHYVE_FS_ROOT=str(host.root / "fs"),
               **{f"SOLSTICE_DRIVERS_BHYVE_{t.upper()}": host.tool(t) for t in TOOLS},
               **{f"SOLSTICE_DRIVERS_BHYVE_HOST_TOOLS_{t.upper()}": host.tool(t) for t in HOST_TOOLS})
    return env


def padless(line: str) -> str:
    """A table row with every run of padding as one column gap."""
    return re.sub(r" {2,}", "  ", line)


def test_the_check_sample_is_what_check_prints(fake_host: FakeHost, tmp_path: Path):
    """The doc's healthy host: everything in place."""
    env = doc_host(fake_host)
    (sample,) = blocks("console")
    command, *expected = sample.splitlines()
    assert command == "$ solstice-orchestrator check --config /etc/solstice/orchestrator.yaml"
    before = fake_host.state()
    fake_host.clear_calls()
    r = subprocess.run([str(EXE), "check", "--config", str(node_file(tmp_path)), "--log-level", "warning"],
                       capture_output=True, text=True, timeout=60, env=env, check=False)
    out = r.stdout
    for tool in (*TOOLS, *HOST_TOOLS):
        real = f"/usr/bin/{tool}" if tool in ("kstat", "isainfo") else f"/usr/sbin/{tool}"
        out = out.replace(fake_host.tool(tool), real)
    assert r.returncode == 0, r.stdout + r.stderr
    # The CHECK column is as wide as its widest cell, printed with the fake tools' paths (which
    # hold the checkout's path): the cells are compared, not their padding.
    assert [padless(line) for line in out.splitlines()] == [padless(line) for line in expected]
    after = fake_host.state()
    assert {k: after[k] for k in ("zones", "datasets", "links")} == \
        {k: before[k] for k in ("zones", "datasets", "links")}
    assert {c[0] for c in fake_host.calls()} <= {"zoneadm", "zfs", "dladm", "kstat", "isainfo", "ping", "route"}
    assert not [c for c in fake_host.calls() if c[0] in ("zfs", "dladm", "zoneadm") and c[1] not in (
        "list", "get", "show-link")]


def test_the_failure_reasons_table_quotes_the_code():
    """The reasons listed are the ones the driver produces (their fixed parts)."""
    text = DOC.read_text()
    for fixed in ("cannot boot: host out of memory for", "bhyve could not start: Unable to initialize backend",
                  "the guest never applied our user-data", "cloud-init finished without running our user-data",
                  "the guest applied our user-data, but the runner never reached", "has no free address",
                  "is smaller than the image's volsize", "egress: runner needs the runner address to be an IP"):
        assert fixed in text
        assert any(fixed.split(":")[0].split("…")[0][:30] in src.read_text() for src in SOURCES), fixed
