"""The fake illumos tools reject what the real ones reject (illumos.md §2-§5, §8).

One test per rule; messages and exit statuses are the real ones.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.drivers.support import IMAGE, SNAPSHOT
from tests.fakes.illumos.host import FakeHost

SRC = f"{IMAGE}@{SNAPSHOT}"


def run(host: FakeHost, tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([host.tool(tool), *args], capture_output=True, text=True, input=stdin, timeout=30)


def ok(host: FakeHost, tool: str, *args: str, stdin: str | None = None) -> str:
    r = run(host, tool, *args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    return r.stdout


def configure(host: FakeHost, zone: str, tmp_path: Path, extra: str = "") -> None:
    cfg = tmp_path / f"{zone}.cfg"
    cfg.write_text(f"create -b\nset brand=bhyve\nset ip-type=exclusive\nset zonepath=/solstice/zones/{zone}\n{extra}")
    ok(host, "zonecfg", "-z", zone, "-f", str(cfg))


# -- zfs ---------------------------------------------------------------------

def test_zfs_snapshot_of_missing_dataset_is_usage_exit_2(fake_host):
    r = run(fake_host, "zfs", "snapshot", "rpool/nope@x")
    assert r.returncode == 2
    assert r.stderr.startswith("cannot open 'rpool/nope': dataset does not exist\nusage:")


def test_zfs_snapshot_twice(fake_host):
    r = run(fake_host, "zfs", "snapshot", SRC)
    assert (r.returncode, r.stderr) == (1, f"cannot create snapshot '{SRC}': dataset already exists\n")


def test_zfs_clone_rules(fake_host):
    r = run(fake_host, "zfs", "clone", "rpool/solstice/images/nope@x", "rpool/solstice/vms/a")
    assert (r.returncode, r.stderr) == (1, "cannot open 'rpool/solstice/images/nope@x': dataset does not exist\n")
    r = run(fake_host, "zfs", "clone", SRC, "rpool/missing/parent/a")
    assert (r.returncode, r.stderr) == (1, "cannot create 'rpool/missing/parent/a': parent does not exist\n")
    r = run(fake_host, "zfs", "clone", SRC, "tank/a")
    assert r.stderr == "cannot create 'tank/a': source and target pools differ\n"
    ok(fake_host, "zfs", "clone", SRC, "rpool/solstice/vms/a")
    r = run(fake_host, "zfs", "clone", SRC, "rpool/solstice/vms/a")
    assert (r.returncode, r.stderr) == (1, "cannot create 'rpool/solstice/vms/a': dataset already exists\n")
    assert run(fake_host, "zfs", "clone", "-p", SRC, "rpool/solstice/vms/a").returncode == 0
    r = run(fake_host, "zfs", "clone", SRC, "rpool/solstice/vms/a/b")
    assert r.stderr == "cannot create 'rpool/solstice/vms/a/b': parent is not a filesystem\n"
    ds = fake_host.state()["datasets"]["rpool/solstice/vms/a"]
    assert (ds["type"], ds["origin"], ds["volsize"]) == ("volume", SRC, 10 * 2**30)


def test_zfs_snapshot_with_clones_needs_capital_r(fake_host):
    ok(fake_host, "zfs", "clone", SRC, "rpool/solstice/vms/a")
    r = run(fake_host, "zfs", "destroy", SRC)
    assert r.returncode == 1
    assert r.stderr == (f"cannot destroy '{SRC}': snapshot has dependent clones\n"
                        "use '-R' to destroy the following datasets:\nrpool/solstice/vms/a\n")
    r = run(fake_host, "zfs", "destroy", "-r", IMAGE)
    assert "volume has dependent clones" in r.stderr and r.returncode == 1
    ok(fake_host, "zfs", "destroy", "-R", SRC)
    assert "rpool/solstice/vms/a" not in fake_host.state()["datasets"]


def test_zfs_destroy_with_children_needs_r(fake_host):
    r = run(fake_host, "zfs", "destroy", IMAGE)
    assert r.returncode == 1
    assert r.stderr == (f"cannot destroy '{IMAGE}': volume has children\n"
                        f"use '-r' to destroy the following datasets:\n{SRC}\n")


def test_zfs_busy_dataset_cannot_be_destroyed(fake_host, tmp_path):
    ok(fake_host, "zfs", "clone", SRC, "rpool/solstice/vms/a")
    ok(fake_host, "dladm", "create-vnic", "-l", "igb0", "vnic0")
    configure(fake_host, "z1", tmp_path, "add net\nset physical=vnic0\nend\nadd device\n"
              "set match=/dev/zvol/rdsk/rpool/solstice/vms/a\nend\nadd attr\nset name=bootdisk\n"
              "set type=string\nset value=rpool/solstice/vms/a\nend\n")
    ok(fake_host, "zoneadm", "-z", "z1", "install")
    ok(fake_host, "zoneadm", "-z", "z1", "boot")
    r = run(fake_host, "zfs", "destroy", "rpool/solstice/vms/a")
    assert (r.returncode, r.stderr) == (1, "cannot destroy 'rpool/solstice/vms/a': dataset is busy\n")
    r = run(fake_host, "dladm", "delete-vnic", "vnic0")
    assert (r.returncode, r.stderr) == (1, "dladm: vnic deletion failed: link busy\n")
    ok(fake_host, "zoneadm", "-z", "z1", "halt")
    ok(fake_host, "zfs", "destroy", "rpool/solstice/vms/a")


def test_zfs_pool_and_missing(fake_host):
    r = run(fake_host, "zfs", "destroy", "rpool")
    assert r.returncode == 1 and "operation does not apply to pools" in r.stderr
    r = run(fake_host, "zfs", "destroy", "rpool/nope")
    assert (r.returncode, r.stderr) == (1, "cannot open 'rpool/nope': dataset does not exist\n")
    r = run(fake_host, "zfs", "destroy", f"{IMAGE}@nope")
    assert r.stderr == "could not find any snapshots to destroy; check snapshot names.\n"


def test_zfs_list_format(fake_host):
    ok(fake_host, "zfs", "clone", SRC, "rpool/solstice/vms/a")
    out = ok(fake_host, "zfs", "list", "-H", "-p", "-o", "name,origin", "-t", "all", "-r", "rpool/solstice")
    lines = out.splitlines()
    assert f"rpool/solstice/vms/a\t{SRC}" in lines
    names = [line.split("\t")[0] for line in lines]
    assert names.index(SRC) == names.index(IMAGE) + 1  # snapshots follow their dataset
    assert f"{IMAGE}\t-" in lines and f"{SRC}\t-" in lines  # '-' for no origin
    assert names == sorted(names, key=lambda n: (n.split("@")[0].split("/"), "@" in n))
    r = run(fake_host, "zfs", "list", "-H", "rpool/nope")
    assert (r.returncode, r.stderr) == (1, "cannot open 'rpool/nope': dataset does not exist\n")


# -- dladm -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vnic0a", "9vnic0", "vn-ic0", "vnic", "a" * 20 + "-1"])
def test_dladm_invalid_vnic_names(fake_host, name):
    r = run(fake_host, "dladm", "create-vnic", "-l", "igb0", name)
    assert (r.returncode, r.stderr) == (1, f"dladm: invalid link name '{name}'\n")


def test_dladm_create_vnic_rules(fake_host):
    long = "a" * 32 + "0"
    assert run(fake_host, "dladm", "create-vnic", "-l", "igb0", long).stderr == f"dladm: link name too long '{long}'\n"
    assert run(fake_host, "dladm", "create-vnic", "-l", "nope0", "vnic0").stderr == "dladm: invalid link name 'nope0'\n"
    r = run(fake_host, "dladm", "create-vnic", "-l", "igb0", "-v", "4095", "vnic0")
    assert r.stderr == "dladm: invalid VLAN identifier '4095'\n"
    ok(fake_host, "dladm", "create-vnic", "-l", "igb0", "vnic0")
    r = run(fake_host, "dladm", "create-vnic", "-l", "igb0", "vnic0")
    assert (r.returncode, r.stderr) == (1, "dladm: vnic creation over igb0 failed: object already exists\n")


def test_dladm_show_vnic(fake_host):
    ok(fake_host, "dladm", "create-vnic", "-l", "igb0", "vnic0")
    r = run(fake_host, "dladm", "show-vnic", "-p")
    assert (r.returncode, r.stderr) == (1, "dladm: output fields must be specified in parsable mode\n")
    mac = ok(fake_host, "dladm", "show-vnic", "-p", "-o", "macaddress", "vnic0").strip()
    assert mac.startswith("2:8:20:") and all(len(o) <= 2 and not (len(o) == 2 and o[0] == "0") for o in mac.split(":"))
    line = ok(fake_host, "dladm", "show-vnic", "-p", "-o", "link,over,macaddress,zone", "vnic0").strip()
    assert line == f"vnic0:igb0:{mac.replace(':', chr(92) + ':')}:--"
    r = run(fake_host, "dladm", "show-vnic", "nope0")
    assert (r.returncode, r.stderr) == (1, "dladm: invalid vnic name 'nope0': object not found\n")
    r = run(fake_host, "dladm", "delete-vnic", "nope0")
    assert (r.returncode, r.stderr) == (1, "dladm: invalid link name 'nope0'\n")


# -- zonecfg -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["bad;name", "-z", "a" * 64, ".dot", "x y"])
def test_zonecfg_bogus_zone_name(fake_host, name):
    r = run(fake_host, "zonecfg", "-z", name, "info")
    assert r.returncode == 2 and r.stderr.startswith(f"{name}: Bogus zone name\n")


def test_zonecfg_inline_comment_is_a_syntax_error(fake_host, tmp_path):
    cfg = tmp_path / "c"
    cfg.write_text("create -b\nset zonepath=/z/a # the path\n")
    r = run(fake_host, "zonecfg", "-z", "a", "-f", str(cfg))
    assert r.returncode == 1
    assert f"On line 2 of {cfg}:\nsyntax error on line 2 at '#'" in r.stderr


def test_zonecfg_unquoted_comma_value_and_quoting(fake_host, tmp_path):
    configure(fake_host, "a", tmp_path,
              'add attr\nset name=vcpus\nset type=string\nset value="sockets=2,cores=2"\nend\n')
    out = ok(fake_host, "zonecfg", "-z", "a", "info", "attr", "name=vcpus")
    assert out == "attr:\n\tname: vcpus\n\ttype: string\n\tvalue: sockets=2,cores=2\n"


def test_zonecfg_missing_end_saves_nothing(fake_host, tmp_path):
    cfg = tmp_path / "c"
    cfg.write_text("create -b\nset zonepath=/z/a\nadd net\nset physical=vnic0\n")
    r = run(fake_host, "zonecfg", "-z", "a", "-f", str(cfg))
    assert (r.returncode, r.stderr) == (1, "Resource incomplete.\n")
    assert "a" not in fake_host.state()["zones"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "zonepath not specified"),
        ("set zonepath=/z/a\nset ip-type=exclusive\nadd net\nend\n", "net: physical not specified"),
        ("set zonepath=/z/a\nset ip-type=exclusive\nadd net\nset physical=vnic0a\nend\n",
         "vnic0a: invalid physical interface name"),
        ("set zonepath=/z/a\nset ip-type=exclusive\nadd net\nset physical=vnic0\nset address=10.0.0.2\nend\n",
         "net: address cannot be specified for an exclusive IP type"),
        ("set zonepath=/z/a\nset ip-type=exclusive\nadd net\nset physical=vnic0\nset defrouter=10.0.0.1\nend\n",
         "net: defrouter for vnic0 cannot be specified without allowed-address for an exclusive IP type"),
    ],
)
def test_zonecfg_verify_rules(fake_host, tmp_path, body, message):
    cfg = tmp_path / "c"
    cfg.write_text("create -b\n" + body)
    r = run(fake_host, "zonecfg", "-z", "a", "-f", str(cfg))
    assert r.returncode == 1
    assert message in r.stderr and "Zone a failed to verify" in r.stderr
    assert "a" not in fake_host.state()["zones"]


def test_zonecfg_device_needs_match(fake_host, tmp_path):
    cfg = tmp_path / "c"
    cfg.write_text("create -b\nset zonepath=/z/a\nadd device\nend\n")
    r = run(fake_host, "zonecfg", "-z", "a", "-f", str(cfg))
    assert r.returncode == 1 and "device: match not specified" in r.stderr


def test_zonecfg_create_on_existing_zone(fake_host, tmp_path):
    configure(fake_host, "a", tmp_path)
    r = run(fake_host, "zonecfg", "-z", "a", "create -b")
    assert (r.returncode, r.stderr) == (1, "Zone exists, input not from terminal and -F not specified:\n"
                                           "create command ignored, exiting.\n")
    r = run(fake_host, "zonecfg", "-z", "a", "create -F -b; set zonepath=/z/b")
    assert r.returncode == 0 and r.stdout == "Zone a already exists; overwriting.\n"
    ok(fake_host, "zoneadm", "-z", "a", "install")
    r = run(fake_host, "zonecfg", "-z", "a", "create -F -b")
    assert r.returncode == 1 and "Zone a already installed; create not allowed." in r.stderr


def test_zonecfg_delete_rules(fake_host, tmp_path):
    r = run(fake_host, "zonecfg", "-z", "a", "delete", "-F")
    assert (r.returncode, r.stderr) == (1, "a: No such zone configured\n")
    configure(fake_host, "a", tmp_path)
    r = run(fake_host, "zonecfg", "-z", "a", "delete")
    assert r.returncode == 1 and "delete command ignored, exiting." in r.stderr
    ok(fake_host, "zoneadm", "-z", "a", "install")
    ok(fake_host, "zoneadm", "-z", "a", "boot")
    r = run(fake_host, "zonecfg", "-z", "a", "delete", "-F")
    assert (r.returncode, r.stderr) == (1, "a: Zone state is invalid for the requested operation\n")
    ok(fake_host, "zoneadm", "-z", "a", "halt")
    ok(fake_host, "zonecfg", "-z", "a", "delete", "-F")  # an installed zone may be deleted with -F
    assert "a" not in fake_host.state()["zones"]


def test_zonecfg_export_shape(fake_host, tmp_path):
    configure(fake_host, "a", tmp_path, 'add net\nset physical=vnic0\nadd property (name=netif,value="e1000")\nend\n')
    assert ok(fake_host, "zonecfg", "-z", "a", "export") == (
        "create -b\nset zonepath=/solstice/zones/a\nset brand=bhyve\nset autoboot=false\nset ip-type=exclusive\n"
        'add net\nset physical="vnic0"\nadd property (name=netif,value="e1000")\nend\n'
    )


# -- zoneadm -----------------------------------------------------------------

def test_zoneadm_list_parsable_format(fake_host, tmp_path):
    configure(fake_host, "a", tmp_path)
    lines = ok(fake_host, "zoneadm", "list", "-cp").splitlines()
    assert lines[0] == "0:global:running:/::ipkg:shared:0"
    assert lines[1] == "-:a:configured:/solstice/zones/a::bhyve:excl:1"
    ok(fake_host, "zoneadm", "-z", "a", "install")
    f = ok(fake_host, "zoneadm", "-z", "a", "list", "-p").strip().split(":")
    assert f[:4] == ["-", "a", "installed", "/solstice/zones/a"] and len(f[4]) == 36 and f[5:] == ["bhyve", "excl", "1"]
    assert ok(fake_host, "zoneadm", "list") == "global\n"  # only running zones without -c
    r = run(fake_host, "zoneadm", "list", "-pv")
    assert (r.returncode, r.stderr) == (1, "zoneadm: list -p and -v are mutually exclusive.\n")


def test_zoneadm_unknown_zone(fake_host):
    for sub in (["list", "-p"], ["boot"], ["halt"], ["uninstall", "-F"]):
        r = run(fake_host, "zoneadm", "-z", "nope", *sub)
        assert (r.returncode, r.stderr) == (1, "zoneadm: nope: No such zone configured\n")


def test_zoneadm_state_rules(fake_host, tmp_path):
    configure(fake_host, "a", tmp_path)
    r = run(fake_host, "zoneadm", "-z", "a", "boot")
    assert (r.returncode, r.stderr) == (1, "zoneadm: zone 'a': must be installed before boot.\n")
    r = run(fake_host, "zoneadm", "-z", "a", "uninstall", "-F")
    assert (r.returncode, r.stderr) == (1, "zoneadm: zone 'a': is already in state 'configured'.\n")
    r = run(fake_host, "zoneadm", "-z", "a", "install")
    assert (r.returncode, r.stdout) == (0, "A ZFS file system has been created for this zone.\n")
    assert "rpool/solstice/zones/a" in fake_host.state()["datasets"]
    assert run(fake_host, "zoneadm", "-z", "a", "install").stderr == "zoneadm: zone 'a': is already installed.\n"
    r = run(fake_host, "zoneadm", "-z", "a", "halt")
    assert (r.returncode, r.stderr) == (0, "zone 'a': zone is already halted\n")
    r = run(fake_host, "zoneadm", "-z", "a", "shutdown")
    assert (r.returncode, r.stderr) == (1, "zoneadm: zone 'a': not running\n")
    r = run(fake_host, "zoneadm", "-z", "a", "uninstall")
    assert r.stderr == "zoneadm: zone 'a': Input not from terminal and -F not specified: uninstall not done.\n"
    ok(fake_host, "zoneadm", "-z", "a", "boot")
    r = run(fake_host, "zoneadm", "-z", "a", "boot")
    assert (r.returncode, r.stderr) == (0, "zone 'a': zone is already booted\n")
    r = run(fake_host, "zoneadm", "-z", "a", "uninstall", "-F")
    assert r.stderr == "zoneadm: zone 'a': uninstall operation is invalid for running zones.\n"
    ok(fake_host, "zoneadm", "-z", "a", "halt")
    ok(fake_host, "zoneadm", "-z", "a", "uninstall", "-F")
    assert "rpool/solstice/zones/a" not in fake_host.state()["datasets"]
    assert fake_host.state()["zones"]["a"]["state"] == "configured"


def test_zoneadm_install_takes_no_options_and_leaves_incomplete(fake_host, tmp_path):
    configure(fake_host, "a", tmp_path)
    r = run(fake_host, "zoneadm", "-z", "a", "install", "-x", "foo")
    assert r.returncode == 1
    assert fake_host.state()["zones"]["a"]["state"] == "incomplete"
    r = run(fake_host, "zoneadm", "-z", "a", "install")
    assert r.stderr == "zoneadm: zone 'a': zone is incomplete; uninstall required.\n"


def test_zoneadm_boot_needs_the_vnic_and_the_disk(fake_host, tmp_path):
    configure(fake_host, "a", tmp_path, "add net\nset physical=vnic0\nend\n")
    ok(fake_host, "zoneadm", "-z", "a", "install")
    r = run(fake_host, "zoneadm", "-z", "a", "boot")
    assert r.returncode == 1
    assert r.stderr == ("zone 'a': failed to add network device: No such file or directory\n"
                        "zoneadm: zone 'a': call to zoneadmd failed\n")
    ok(fake_host, "dladm", "create-vnic", "-l", "igb0", "vnic0")
    ok(fake_host, "zonecfg", "-z", "a",
       "add attr; set name=bootdisk; set type=string; set value=rpool/solstice/vms/d; end")
    r = run(fake_host, "zoneadm", "-z", "a", "boot")
    assert r.returncode == 1 and "exec /usr/lib/brand/bhyve/boot -z a failed" in r.stderr
    ok(fake_host, "zfs", "clone", SRC, "rpool/solstice/vms/d")
    r = run(fake_host, "zoneadm", "-z", "a", "boot")  # the zvol is not matched by a device resource
    assert r.returncode == 1 and "call to zoneadmd failed" in r.stderr
    assert "not matched by a device" in fake_host.fs("/solstice/zones/a/log/zone.log").read_text()
    ok(fake_host, "zonecfg", "-z", "a", "add device; set match=/dev/zvol/rdsk/rpool/solstice/vms/d; end")
    ok(fake_host, "zoneadm", "-z", "a", "boot")
    assert fake_host.state()["zones"]["a"]["state"] == "running"
    ok(fake_host, "zoneadm", "-z", "a", "halt")


def test_zoneadm_uninstall_fails_on_a_busy_dependent_dataset(fake_host, tmp_path):
    """A clone of a snapshot inside the zonepath dataset blocks uninstall: the zone stays incomplete."""
    configure(fake_host, "a", tmp_path)
    ok(fake_host, "zoneadm", "-z", "a", "install")
    ok(fake_host, "zfs", "snapshot", "rpool/solstice/zones/a@s")
    ok(fake_host, "zfs", "clone", "rpool/solstice/zones/a@s", "rpool/other/c")
    r = run(fake_host, "zoneadm", "-z", "a", "uninstall", "-F")
    assert r.returncode == 1 and "has dependent clones" in r.stderr
    assert fake_host.state()["zones"]["a"]["state"] == "incomplete"


def test_fault_injection_counts_calls(fake_host):
    fake_host.set_faults([{"tool": "zfs", "sub": "list", "nth": 2, "exit": 5, "stderr": "boom"}])
    assert run(fake_host, "zfs", "list").returncode == 0
    r = run(fake_host, "zfs", "list")
    assert (r.returncode, r.stderr) == (5, "boom\n")
    assert run(fake_host, "zfs", "list").returncode == 0
