"""The fake bhyve/zone runtime is as strict as the real one (vm.py, zoneadm.py, bhyvectl.py, ipf.py).

One test per strictness. Each would have caught a driver bug: the console
``,wait`` option (bhyve dies at device init), a capture that connects late
(output is dropped), a second reader, a guest reboot, an overcommitted host,
a shutdown window in ``zoneadm list -p``, an asynchronous power-off.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.drivers.support import CALLIN, SRC
from tests.fakes.illumos import ipf
from tests.fakes.illumos.host import FakeHost
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
ZONE = "a"
ROOT = f"/solstice/zones/{ZONE}/root"


def run(host: FakeHost, tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([host.tool(tool), *args], capture_output=True, text=True, timeout=30, env=env)


def ok(host: FakeHost, tool: str, *args: str) -> str:
    r = run(host, tool, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def bootable(host: FakeHost, tmp_path: Path, *attrs: tuple[str, str], runner: str = "--tick") -> None:
    """An installed zone with a VNIC, a cloned boot disk and a NoCloud seed that starts the runner."""
    host.set_runner([sys.executable, str(CALLIN), runner])
    ok(host, "zfs", "clone", SRC, "rpool/solstice/vms/d")
    ok(host, "dladm", "create-vnic", "-l", "igb0", "vnic0")
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\nruncmd:\n- [solstice-runner, run]\n")
    lines = ["create -b", "set brand=bhyve", "set ip-type=exclusive", f"set zonepath=/solstice/zones/{ZONE}",
             "add net", "set physical=vnic0", "end",
             "add device", 'set match="/dev/zvol/rdsk/rpool/solstice/vms/d"', "end"]
    for name, value in (("bootdisk", "rpool/solstice/vms/d"), ("cloud-init", str(user_data)), *attrs):
        lines += ["add attr", f"set name={name}", "set type=string", f'set value="{value}"', "end"]
    cfg = tmp_path / "zone.cfg"
    cfg.write_text("\n".join(lines) + "\n")
    ok(host, "zonecfg", "-z", ZONE, "-f", str(cfg))
    ok(host, "zoneadm", "-z", ZONE, "install")


def state(host: FakeHost) -> str:
    return host.state()["zones"][ZONE]["state"]


def init_log(host: FakeHost) -> str:
    path = host.fs(f"{ROOT}/tmp/init.log")
    return path.read_text() if path.exists() else ""


def ticks(host: FakeHost) -> int:
    path = host.fs(f"{ROOT}/guest/ticks")
    try:
        return int(path.read_text() or -1)
    except (OSError, ValueError):
        return -1


@contextlib.contextmanager
def console(host: FakeHost):  # type: ignore[no-untyped-def]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(host.fs(f"{ROOT}/tmp/vm.com1")))
    try:
        yield sock
    finally:
        sock.close()


def read_until(sock: socket.socket, text: str) -> str:
    data = b""
    while text.encode() not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_console_option_after_the_socket_path_kills_bhyve_at_device_init(fake_host: FakeHost, tmp_path: Path):
    """illumos-gate uart_backend.c uart_sock_backend: anything after the path fails; zoneadm boot still says 0."""
    bootable(fake_host, tmp_path, ("console", "socket,/tmp/vm.com1,wait"))
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    wait_until(lambda: state(fake_host) == "installed", what="the zone to fall back to installed")
    log = init_log(fake_host)
    assert "Unable to initialize backend 'socket,/tmp/vm.com1,wait' for LPC device com1" in log
    assert "Device emulation initialization error" in log
    assert not fake_host.fs(f"{ROOT}/tmp/vm.com1").exists()


def test_console_output_without_a_client_is_dropped(fake_host: FakeHost, tmp_path: Path):
    bootable(fake_host, tmp_path, ("console", "socket,/tmp/vm.com1"))
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    wait_until(lambda: ticks(fake_host) >= 2, what="the guest to print before anyone listens")
    with console(fake_host) as sock:
        seen = ticks(fake_host)
        text = read_until(sock, f"runner: tick {seen + 2}\n")
    assert "starting UEFI firmware" not in text and "runner: booted" not in text
    assert "runner: tick 0\n" not in text and f"runner: tick {seen + 2}\n" in text
    ok(fake_host, "zoneadm", "-z", ZONE, "halt")


def test_console_takes_one_client_and_the_next_after_it_left(fake_host: FakeHost, tmp_path: Path):
    bootable(fake_host, tmp_path, ("console", "socket,/tmp/vm.com1"))
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    wait_until(lambda: fake_host.fs(f"{ROOT}/tmp/vm.com1").exists(), what="the console socket")
    with console(fake_host) as first:
        read_until(first, "runner: tick")
        with console(fake_host) as second:
            assert second.recv(100) == b"", "a second client is closed at once"
        wait_until(lambda: "uart: unexpected client conn" in init_log(fake_host), what="bhyve's complaint")
        assert "tick" in read_until(first, "runner: tick")
    wait_until(lambda: "uart: closing client conn" in init_log(fake_host), what="the slot to be freed")
    with console(fake_host) as third:
        assert "runner: tick" in read_until(third, "runner: tick")
    ok(fake_host, "zoneadm", "-z", ZONE, "halt")


def test_a_guest_reboot_binds_the_console_anew(fake_host: FakeHost, tmp_path: Path):
    bootable(fake_host, tmp_path, ("console", "socket,/tmp/vm.com1"))
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    wait_until(lambda: fake_host.fs(f"{ROOT}/tmp/vm.com1").exists(), what="the console socket")
    with console(fake_host) as sock:
        read_until(sock, "runner: tick")
        fake_host.guest_reboot(ZONE)
        read_until(sock, "never printed")  # returns at EOF
    with console(fake_host) as again:
        assert "runner: tick" in read_until(again, "runner: tick")
    assert state(fake_host) == "running"
    ok(fake_host, "zoneadm", "-z", ZONE, "halt")


def test_an_overcommitted_host_keeps_bhyve_retrying_with_the_zone_running(fake_host: FakeHost, tmp_path: Path):
    """bhyverun.c: vm_setup_memory loops on ENOMEM; the zone never leaves running by itself."""
    fake_host.set_memory(1024)
    bootable(fake_host, tmp_path, ("ram", "2G"))
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    wait_until(lambda: init_log(fake_host).count("retrying in 1 second") >= 2, what="the ENOMEM loop")
    assert "Unable to allocate memory (2147483648), retrying in 1 second\n" in init_log(fake_host)
    assert state(fake_host) == "running"
    ok(fake_host, "zoneadm", "-z", ZONE, "halt")
    assert state(fake_host) == "installed"


def test_force_poweroff_returns_at_once_and_the_zone_halts_later(fake_host: FakeHost, tmp_path: Path):
    """While the zone shuts down, ``zoneadm -z Z list -p`` prints nothing and exits 0 (zone_print's skip)."""
    fake_host.set_shutdown_hold(3.0)
    bootable(fake_host, tmp_path)
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    ok(fake_host, "bhyvectl", f"--vm={ZONE}", "--force-poweroff")
    wait_until(lambda: state(fake_host) == "shutting_down", what="the zone to start halting")
    r = run(fake_host, "zoneadm", "-z", ZONE, "list", "-p")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert ok(fake_host, "zoneadm", "list", "-cp") == "0:global:running:/::ipkg:shared:0\n"
    wait_until(lambda: state(fake_host) == "installed", timeout=15, what="zoneadmd to finish the halt")
    assert ok(fake_host, "zoneadm", "-z", ZONE, "list", "-p").split(":")[2] == "installed"
    r = run(fake_host, "bhyvectl", f"--vm={ZONE}", "--force-poweroff")
    assert r.returncode == 1 and "could not be opened" in r.stderr


def test_halt_is_refused_below_installed(fake_host: FakeHost, tmp_path: Path):
    """zoneadmd server(): halt of a configured/incomplete zone is invalid (a race with uninstall)."""
    bootable(fake_host, tmp_path)
    ok(fake_host, "zoneadm", "-z", ZONE, "uninstall", "-F")
    r = run(fake_host, "zoneadm", "-z", ZONE, "halt")
    assert (r.returncode, r.stderr) == (1, f"zone '{ZONE}': halt operation is invalid for zones in state "
                                           f"'configured'\nzoneadm: zone '{ZONE}': call to zoneadmd failed\n")


def test_a_missing_boot_rom_fails_the_boot_hook(fake_host: FakeHost, tmp_path: Path):
    bootable(fake_host, tmp_path, ("bootrom", "BHYVE_DEBUG"))
    r = run(fake_host, "zoneadm", "-z", ZONE, "boot")
    assert r.returncode == 1 and f"exec /usr/lib/brand/bhyve/boot -z {ZONE} failed" in r.stderr
    assert "bootrom BHYVE_DEBUG not found." in fake_host.fs(f"/solstice/zones/{ZONE}/log/zone.log").read_text()


def test_a_missing_user_data_file_is_replaced_by_the_brand_silently(fake_host: FakeHost, tmp_path: Path):
    """boot.py: a cloud-init path that is not a file falls back to generated user-data (nothing runs)."""
    bootable(fake_host, tmp_path, ("console", "socket,/tmp/vm.com1"))
    (tmp_path / "user-data").unlink()
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    seed = fake_host.fs(f"{ROOT}/cloud-init/user-data").read_text()
    assert seed == f"#cloud-config\ndisable_root: false\nhostname: {ZONE}\n"
    assert state(fake_host) == "running"
    ok(fake_host, "zoneadm", "-z", ZONE, "halt")


def test_messages_follow_the_locale(fake_host: FakeHost):
    """Outside the C locale the tools print translated messages: English matching needs LC_ALL=C."""
    import os

    english = "zoneadm: nope: No such zone configured\n"
    german = dict(os.environ, LANG="de_DE.UTF-8")
    german.pop("LC_ALL", None)
    assert run(fake_host, "zoneadm", "-z", "nope", "list", "-p", env=german).stderr != english
    assert "No such zone configured" not in run(fake_host, "zoneadm", "-z", "nope", "list", "-p", env=german).stderr
    assert run(fake_host, "zoneadm", "-z", "nope", "list", "-p", env={**german, "LC_ALL": "C"}).stderr == english


def test_the_brand_loads_the_zone_firewall_and_refuses_a_bad_one(fake_host: FakeHost, tmp_path: Path):
    """pkg5 firewall.ksh: <zonepath>/etc/ipf.conf is loaded into the zone's GZ-controlled ipf at READY."""
    bootable(fake_host, tmp_path)
    etc = fake_host.fs(f"/solstice/zones/{ZONE}/etc")
    etc.mkdir(parents=True)
    (etc / "ipf.conf").write_text("pass out quick proto tcp from any to 10.0.0.5 port = 50051 flags S keep state\n"
                                  "pass out to any\n")
    r = run(fake_host, "zoneadm", "-z", ZONE, "boot")
    assert r.returncode == 1
    assert "error loading ipf config for IPv4: line 2" in fake_host.fs(
        f"/solstice/zones/{ZONE}/log/zone.log").read_text()
    (etc / "ipf.conf").write_text("pass out quick proto tcp from any to 10.0.0.5/32 port = 50051 flags S keep state\n"
                                  "block out quick all\nblock in quick all\n")
    (etc / "ipf6.conf").write_text("block out quick all\nblock in quick all\n")
    ok(fake_host, "zoneadm", "-z", ZONE, "boot")
    rules = fake_host.state()["zones"][ZONE]["firewall"]
    assert ipf.evaluate(rules["ipv4"], "out", "tcp", "10.0.0.5", 50051) == "pass"
    assert ipf.evaluate(rules["ipv4"], "out", "tcp", "10.0.0.5", 22) == "block"
    assert ipf.evaluate(rules["ipv4"], "out", "udp", "1.1.1.1", 53) == "block"
    assert ipf.evaluate(rules["ipv6"], "out", "tcp", "2001:db8::1", 443) == "block"
    ok(fake_host, "zoneadm", "-z", ZONE, "halt")
    assert "firewall" not in fake_host.state()["zones"][ZONE]


@pytest.mark.parametrize(("rule", "problem"), [
    ("pass out to any", "expected 'all' or 'from'"),
    ("pass out quick from any to 10.0.0.5 port = 80", "ports need proto"),
    ("pass out quick proto tcp from any to 2001:db8::1", "is not IPv4"),
    ("allow out all", "unknown action"),
    ("pass out quick all keep frags", "syntax error at 'keep'"),
])
def test_ipf_parser_refuses_what_it_does_not_know(rule: str, problem: str):
    with pytest.raises(ipf.IpfSyntax, match=problem):
        ipf.parse(rule)
