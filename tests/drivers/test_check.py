"""``solstice-orchestrator check`` against a fake host: healthy, then each fault injected on its own."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from orchestrator.catalog import DriverConfig, HostTools, ImageEntry, LinkNetwork
from orchestrator.drivers.check import CheckContext, NodeFacts, Verdict, check_host
from runner.agent import VERSION
from tests.drivers.support import IMAGE, SNAPSHOT, bhyve_config
from tests.fakes.illumos.host import FakeHost

EXE = Path(sys.executable).parent / "solstice-orchestrator"
READ_ONLY = {("zoneadm", "list"), ("zfs", "list"), ("zfs", "get"), ("dladm", "show-link"), ("kstat", "-p"),
             ("isainfo", "-x"), ("ping",), ("route", "-n")}
GATEWAY = "10.9.0.1"


def healthy(host: FakeHost, tmp_path: Path) -> DriverConfig:
    """A host where everything is in place: the brand, vmm, the image (with its runner version), the gateway."""
    host.fs("/usr/lib/brand/bhyve").mkdir(parents=True, exist_ok=True)
    host.fs("/usr/lib/brand/bhyve/boot").write_text("")
    host.fs("/dev").mkdir(parents=True, exist_ok=True)
    host.fs("/dev/vmmctl").write_text("")
    host.set_host(alive=[GATEWAY], routes=["10.0.0.0/8"], freemem_pages=(64 << 30) // os.sysconf("SC_PAGE_SIZE"))
    subprocess.run([host.tool("zfs"), "set", f"solstice:runner-version={VERSION}", IMAGE], check=True)
    image = ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, ram="4G", disk_size="20G", link="igb0", egress="runner")
    pool = LinkNetwork(cidr="10.9.0.0/24", gateway=GATEWAY, resolvers=(GATEWAY,))
    cfg = bhyve_config(host, tmp_path / "state", links={"igb0": pool}, **{"illumos-stable": image})
    tools = HostTools(**{t: host.tool(t) for t in ("kstat", "isainfo", "ping", "route", "ipf")})
    return DriverConfig(driver="bhyve", bhyve=dataclasses.replace(cfg, host_tools=tools))


async def lines_of(cfg: DriverConfig, node: NodeFacts = NodeFacts(4, f"{GATEWAY}:50051"), euid: int = 0):
    lines = await check_host(CheckContext(cfg, node, euid))
    return {line.what: line for line in lines}, lines


async def test_a_healthy_host_is_ready_with_read_only_probes(fake_host: FakeHost, tmp_path: Path):
    by_what, lines = await lines_of(healthy(fake_host, tmp_path))
    assert [line for line in lines if line.verdict is not Verdict.OK] == []
    assert by_what["memory for 4 VM(s) of 4 GiB"].detail.startswith("64.0 GiB free")
    assert by_what["link igb0: runner address 10.9.0.1:50051 reachable"].detail == "on the pool's subnet 10.9.0.0/24"
    assert by_what["image illumos-stable: runner version"].detail == VERSION
    assert {tuple(c[:2]) if c[0] != "ping" else ("ping",) for c in fake_host.calls() if c[0] != "zfs" or
            c[1] != "set"} <= READ_ONLY


def _bhyve(cfg: DriverConfig, **changes: object) -> DriverConfig:
    return dataclasses.replace(cfg, bhyve=dataclasses.replace(cfg.bhyve, **changes))


def _image(cfg: DriverConfig, **changes: object) -> DriverConfig:
    image = dataclasses.replace(cfg.bhyve.images["illumos-stable"], **changes)
    return _bhyve(cfg, images={"illumos-stable": image})


def _pool(cfg: DriverConfig, **changes: object) -> DriverConfig:
    return _bhyve(cfg, links={"igb0": dataclasses.replace(cfg.bhyve.links["igb0"], **changes)})


Fault = Callable[[FakeHost, DriverConfig], "DriverConfig | None"]
FAULTS: list[tuple[str, Fault, str, Verdict, str]] = [
    ("brand", lambda h, c: h.fs("/usr/lib/brand/bhyve/boot").unlink(), "bhyve zone brand", Verdict.FAIL,
     "pkg install system/zones/brand/bhyve"),
    ("vmm", lambda h, c: h.fs("/dev/vmmctl").unlink(), "hardware virtualisation (/dev/vmmctl)", Verdict.FAIL,
     "enable VT-x/AMD-V"),
    ("no vmx", lambda h, c: h.set_host(isa=["sse4.2"]), "hardware virtualisation (/dev/vmmctl)", Verdict.FAIL,
     "neither vmx nor svm"),
    ("tool", lambda h, c: _bhyve(c, zonecfg="/nonexistent/zonecfg"), "tool /nonexistent/zonecfg", Verdict.FAIL,
     "not found"),
    ("zoneadm", lambda h, c: h.set_faults([{"tool": "zoneadm", "sub": "list", "exit": 1, "stderr": "door broken"}]),
     "zoneadm list -cp", Verdict.FAIL, "door broken"),
    ("mount", lambda h, c: _bhyve(c, zones_path=Path("/elsewhere")), "rpool/solstice/zones mounted at /elsewhere",
     Verdict.FAIL, "zfs set mountpoint=/elsewhere rpool/solstice/zones"),
    ("socket path", lambda h, c: _bhyve(c, zones_path=Path("/" + "z" * 80)) if not subprocess.run(
        [h.tool("zfs"), "set", "mountpoint=/" + "z" * 80, "rpool/solstice/zones"], check=True).returncode else None,
     "console socket path fits AF_UNIX",
     Verdict.FAIL, "shorter zones_path"),
    ("snapshot", lambda h, c: _image(c, snapshot="2099-01-01"),
     f"image illumos-stable: {IMAGE}@2099-01-01", Verdict.FAIL, "dataset does not exist"),
    ("not a volume", lambda h, c: _image(c, dataset="rpool/other", snapshot="s") if not subprocess.run(
        [h.tool("zfs"), "snapshot", "rpool/other@s"], check=True).returncode else None,
     "image illumos-stable: rpool/other@s", Verdict.FAIL, "boots from a ZFS volume"),
    ("disk_size", lambda h, c: _image(c, disk_size="1G"), "image illumos-stable: disk_size", Verdict.FAIL,
     "below the image's 10 GiB"),
    ("rom", lambda h, c: _image(c, bootrom="BHYVE_DEBUG"), "image illumos-stable: boot ROM BHYVE_DEBUG",
     Verdict.FAIL, "is missing"),
    ("runner version", lambda h, c: subprocess.run([h.tool("zfs"), "set", "solstice:runner-version=0.0.1", IMAGE],
                                                   check=True) and None,
     "image illumos-stable: runner version", Verdict.WARN, f"0.0.1, the orchestrator is {VERSION}"),
    ("link", lambda h, c: _bhyve(c, links={"ixgbe0": c.bhyve.links["igb0"]}, images={"illumos-stable": (
        dataclasses.replace(c.bhyve.images["illumos-stable"], link="ixgbe0"))}),
     "link ixgbe0", Verdict.FAIL, "invalid link name 'ixgbe0'"),
    ("gateway", lambda h, c: h.set_host(alive=[]), f"link igb0: gateway {GATEWAY}", Verdict.FAIL,
     f"no answer from {GATEWAY}"),
    ("no route", lambda h, c: h.set_host(routes=[]), "link igb0: runner address 10.5.0.5:50051 reachable",
     Verdict.FAIL, "no route to 10.5.0.5"),
    ("no gateway", lambda h, c: _pool(c, gateway=""), "link igb0: runner address 10.5.0.5:50051 reachable",
     Verdict.FAIL, "outside 10.9.0.0/24 and the pool has no gateway"),
    ("dhcp", lambda h, c: _pool(c, dhcp=True, cidr="", gateway="", resolvers=()), "link igb0: addresses",
     Verdict.WARN, "guests need a DHCP server"),
    ("ipf", lambda h, c: _bhyve(c, host_tools=dataclasses.replace(c.bhyve.host_tools, ipf="/nonexistent/ipf")),
     "ipf for egress: runner (/nonexistent/ipf)", Verdict.FAIL, "pkg install network/ipfilter"),
    ("memory", lambda h, c: h.set_host(freemem_pages=(8 << 30) // os.sysconf("SC_PAGE_SIZE")),
     "memory for 4 VM(s) of 4 GiB", Verdict.FAIL, "bhyve would loop on ENOMEM"),
    ("arc", lambda h, c: h.set_host(freemem_pages=(8 << 30) // os.sysconf("SC_PAGE_SIZE"), arc_size=20 << 30,
                                    arc_c_min=1 << 30),
     "memory for 4 VM(s) of 4 GiB", Verdict.WARN, "boots wait for the ARC to shrink"),
]


@pytest.mark.parametrize(("fault", "inject", "what", "verdict", "text"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_fault_is_one_line_with_its_verdict_and_fix(
    fake_host: FakeHost, tmp_path: Path, fault: str, inject: Fault, what: str, verdict: Verdict, text: str
):
    cfg = healthy(fake_host, tmp_path)
    cfg = inject(fake_host, cfg) or cfg
    node = NodeFacts(4, "10.5.0.5:50051" if fault in ("no route", "no gateway") else f"{GATEWAY}:50051")
    by_what, lines = await lines_of(cfg, node)
    line = by_what[what]
    assert line.verdict is verdict, line
    assert text in line.detail + line.fix
    if verdict is not Verdict.OK:
        assert line.fix, "every line that is not ok says what to do"
    bad = [ln for ln in lines if ln.verdict is not Verdict.OK and ln.what != what]
    assert bad == [] or fault in ("tool", "link", "snapshot", "not a volume"), bad  # the fault is the only one


async def test_not_root_fails(fake_host: FakeHost, tmp_path: Path):
    by_what, _ = await lines_of(healthy(fake_host, tmp_path), euid=1000)
    assert by_what["running as root"].verdict is Verdict.FAIL and "zonepaths are 0700 root" in by_what[
        "running as root"].fix


async def test_a_runner_host_name_fails_only_with_restricted_egress(fake_host: FakeHost, tmp_path: Path):
    cfg = healthy(fake_host, tmp_path)
    what = "link igb0: runner address orch.example.org:50051 reachable"
    by_what, _ = await lines_of(cfg, NodeFacts(4, "orch.example.org:50051"))
    assert by_what[what].verdict is Verdict.FAIL
    by_what, _ = await lines_of(_image(cfg, egress="open"), NodeFacts(4, "orch.example.org:50051"))
    assert by_what[what].verdict is Verdict.WARN


def write_node_file(cfg: DriverConfig, path: Path, advertise: str) -> Path:
    b = cfg.bhyve
    doc = {
        "store_url": "postgresql://ignored",  # the rest of the node file is not the check's business
        "node": {"capacity": 2},
        "grpc": {"listen": "0.0.0.0:50051", "advertise": advertise},
        "drivers": {"driver": "bhyve", "bhyve": {
            "images": {label: {"dataset": i.dataset, "snapshot": i.snapshot, "ram": i.ram, "link": i.link,
                               "egress": i.egress, "disk_size": i.disk_size}
                       for label, i in b.images.items()},
            "links": {name: {"cidr": n.cidr, "gateway": n.gateway, "resolvers": list(n.resolvers)}
                      for name, n in b.links.items()},
            "state_dir": str(b.state_dir), "fs_root": str(b.fs_root),
            "host_tools": dataclasses.asdict(b.host_tools),
            **{t: getattr(b, t) for t in ("zonecfg", "zoneadm", "zfs", "dladm", "bhyvectl")},
        }},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def check_cli(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "check", "--config", str(config), "--log-level", "warning", *extra],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ), check=False)


async def test_the_command_prints_one_table_and_json_and_exits_by_the_verdicts(fake_host: FakeHost, tmp_path: Path):
    cfg = healthy(fake_host, tmp_path)
    node_file = write_node_file(cfg, tmp_path / "node.yaml", f"{GATEWAY}:50051")
    r = check_cli(node_file)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = r.stdout.splitlines()
    assert rows[0].split() == ["VERDICT", "CHECK", "FOUND", "/", "FIX"]
    assert rows[-1] == "host is ready"
    assert any(row.startswith("ok      memory for 2 VM(s) of 4 GiB") for row in rows)  # node.capacity is read
    fake_host.set_host(alive=[])
    r = check_cli(node_file, "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["ready"] is False
    (gateway,) = [c for c in doc["checks"] if c["what"] == f"link igb0: gateway {GATEWAY}"]
    assert gateway["verdict"] == "fail" and gateway["fix"].startswith(f"configure {GATEWAY} on igb0")
    table = check_cli(node_file)
    assert table.returncode == 1 and table.stdout.splitlines()[-1] == "1 problem(s) would fail jobs"


def test_bad_config_is_one_error_line(tmp_path: Path):
    cfg = tmp_path / "node.yaml"
    bhyve = {"images": {"x": {"dataset": "rpool/a b"}}}
    cfg.write_text(yaml.safe_dump({"drivers": {"driver": "bhyve", "bhyve": bhyve}}))
    r = check_cli(cfg)
    assert r.returncode == 1 and r.stderr.startswith("ERROR: image dataset")
    assert "Traceback" not in r.stderr


def test_local_driver_with_network_isolation(tmp_path: Path):
    env = dict(os.environ, PATH=str(EXE.parent) + os.pathsep + os.environ.get("PATH", ""),
               SOLSTICE_DRIVERS_DRIVER="local", SOLSTICE_DRIVERS_LOCAL_STATE_DIR=str(tmp_path / "vms"),
               SOLSTICE_DRIVERS_LOCAL_ISOLATE_NETWORK="true",
               SOLSTICE_DRIVERS_LOCAL_CONTAIN="false")  # containment: the next test
    argv = [str(EXE), "check", "--log-level", "warning"]
    good = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    assert any(row.startswith("ok") and "network isolation (unshare --net --map-root-user)" in row
               for row in good.stdout.splitlines())
    env["SOLSTICE_DRIVERS_LOCAL_UNSHARE"] = str(tmp_path / "no-unshare")
    bad = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert bad.returncode == 1
    (line,) = [ln for ln in bad.stdout.splitlines() if ln.startswith("FAIL")]
    assert "network isolation (unshare --net --map-root-user)" in line
    assert f"cannot run {tmp_path / 'no-unshare'}: No such file or directory" in line
    assert bad.stdout.splitlines()[-1] == "1 problem(s) would fail jobs"
    assert not (tmp_path / "vms").exists()


def test_local_driver_containment_names_a_missing_job_user(tmp_path: Path):
    env = dict(os.environ, PATH=str(EXE.parent) + os.pathsep + os.environ.get("PATH", ""),
               SOLSTICE_DRIVERS_DRIVER="local", SOLSTICE_DRIVERS_LOCAL_STATE_DIR=str(tmp_path / "vms"),
               SOLSTICE_DRIVERS_LOCAL_JOB_USER="solstice-nobody")
    done = subprocess.run([str(EXE), "check", "--json", "--log-level", "warning"], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    lines = {line["what"]: line for line in json.loads(done.stdout)["checks"]}
    user = lines["job user solstice-nobody"]
    assert user["verdict"] == "warn"  # trusted jobs still run, uncontained
    assert user["detail"] == ("the job user solstice-nobody does not exist (create it: useradd --system "
                              "--user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "
                              "solstice-nobody)")
    untrusted = lines["untrusted jobs (fork pull requests) isolated"]
    assert untrusted["verdict"] == "fail"  # what would fail jobs: fork PRs are refused
    assert untrusted["detail"] == "this node cannot isolate untrusted jobs; see docs/security.md"
    assert done.returncode == 1
    assert not (tmp_path / "vms").exists()
