"""Fake ``zoneadm`` (illumos.md §3, §8): list, install, boot, halt, shutdown, uninstall.

``boot`` does what the bhyve brand's boot hook checks (disks exist and are
matched by a device, links exist, the ``bootrom`` file exists under
``/usr/share/bhyve/firmware``), loads ``<zonepath>/etc/ipf.conf`` (and
``ipf6.conf``) into the zone's GZ-controlled firewall as the brand's READY
poststate does (pkg5 ``src/brand/shared/firewall.ksh``; a file the fake
``ipf`` parser refuses fails the boot), materialises the NoCloud seed from
the ``cloud-init`` attribute (§6.1) and starts the fake VM process
(``tests.fakes.illumos.vm``), which runs the runner from that seed.

``list -p`` leaves out a zone that is ``shutting_down`` or ``down``: the real
``zone_print`` skips a zone that shut down while it collected data, and the
fake holds that window open for the whole shutdown. ``halt`` follows
zoneadmd's ``server()``: ``installed`` is "already halted" (exit 0),
``configured``/``incomplete`` are refused.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.fakes.illumos import ipf, zfs
from tests.fakes.illumos import state as st
from tests.fakes.illumos.state import err

REPO = Path(__file__).resolve().parents[3]
FIRMWARE = "/usr/share/bhyve/firmware"
STATES = ("configured", "incomplete", "installed", "ready", "running", "shutting_down", "down", "mounted")
VERBOSE_ROW = "{:>4} {:<16} {:<10} {:<30} {:<8} {:<6}"  # zoneadm list -v: ID NAME STATUS PATH BRAND IP
USAGE = """usage:  zoneadm [-z <zone>] [-u <uuid-match>] <subcommand>
subcommand:
        help
        boot [-- boot_arguments]
        halt
        ready
        shutdown [-r [-- boot_arguments]]
        reboot [-- boot_arguments]
        list [-cinpv]
        verify
        install [brand-specific args]
        uninstall [-F] [brand-specific args]
        clone [-m method] [-s <ZFS snapshot>] [brand-specific args] zonename
        move zonepath
        detach [-n] [brand-specific args]
        attach [-F] [-n <path>] [brand-specific args]
        mark incomplete"""


def usage() -> int:
    err(USAGE)
    return 2


def rank(s: str) -> int:
    return STATES.index(s)


def attr(zone: dict[str, Any], name: str) -> str | None:
    for a in zone["config"]["attrs"]:
        if a.get("name") == name:
            return a.get("value")
    return None


def zonepath_dataset(state: dict[str, Any], zonepath: str) -> str | None:
    for name, d in state["datasets"].items():
        if d["type"] == "filesystem" and zfs.mountpoint(state, name) == zonepath:
            return name
    return None


def disk_datasets(zone: dict[str, Any]) -> list[str]:
    out = []
    for a in zone["config"]["attrs"]:
        n = a.get("name", "")
        if n == "bootdisk" or n == "disk" or (n.startswith("disk") and n[4:].isdigit()):
            value = a.get("value", "").split(",")[0]
            out.append(value)
    return out


def kill_vm(zone: dict[str, Any]) -> None:
    pid, started = zone.get("vm_pid"), zone.get("vm_start")
    if not pid or st.proc_start_time(pid) != started:
        return  # gone, or the pid was recycled: never kill a stranger
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if st.proc_start_time(pid) != started:
                return
            time.sleep(0.01)


def to_installed(state: dict[str, Any], name: str) -> None:
    """running -> installed: release disks and links, delete on-demand VNICs (halt poststate)."""
    zone = state["zones"][name]
    zone["state"] = "installed"
    zone["zoneid"] = None
    zone["vm_pid"] = zone["vm_start"] = None
    for ds in zone.get("busy", []):
        if ds in state["datasets"]:
            state["datasets"][ds]["in_use"] = False
    zone["busy"] = []
    zone.pop("firewall", None)
    for net in zone["config"]["nets"]:
        link = state["links"].get(net.get("physical"))
        if link and link.get("zone") == name:
            link["zone"] = None
        if net.get("global-nic") and link and link["class"] == "vnic":
            del state["links"][net["physical"]]


def list_line(state: dict[str, Any], name: str) -> str:
    z = state["zones"][name]
    cfg = z["config"]
    zoneid = str(z["zoneid"]) if z.get("zoneid") is not None else "-"
    path = cfg.get("zonepath", "").replace(":", "\\:")
    brand = cfg.get("brand") or "ipkg"
    ip = "excl" if cfg.get("ip-type") == "exclusive" else "shared"
    return f"{zoneid}:{name}:{z['state']}:{path}:{z.get('uuid') or ''}:{brand}:{ip}:{z.get('debugid', '')}"


def cmd_list(state: dict[str, Any], zone: str | None, args: list[str]) -> int:
    flags = set()
    for a in args:
        if not a.startswith("-") or len(a) < 2:
            return usage()
        for ch in a[1:]:
            if ch not in "cinpv":
                err(f"zoneadm: illegal option -- {ch}")
                return usage()
            flags.add(ch)
    if "p" in flags and "v" in flags:
        err("zoneadm: list -p and -v are mutually exclusive.")
        return 1
    if zone is not None and flags - {"p", "v"}:
        err("zoneadm: -z and -c/-i/-n are mutually exclusive.")  # wording UNCONFIRMED
        return 1
    running = [n for n in state["index"] if state["zones"][n]["state"] in ("ready", "running")]
    others = [n for n in state["index"] if n not in running]
    if zone == "global":
        names = []
    elif zone is not None:
        names = [zone]
    elif "c" in flags:
        names = running + others
    elif "i" in flags:
        names = running + [n for n in others if rank(state["zones"][n]["state"]) >= rank("installed")]
    else:
        names = running
    # zone_print skips a zone that shut down while the list was collected.
    names = [n for n in names if n == "global" or state["zones"][n]["state"] not in ("shutting_down", "down")]
    show_global = zone is None and "n" not in flags or zone == "global"
    if "v" in flags:
        print(VERBOSE_ROW.format("ID", "NAME", "STATUS", "PATH", "BRAND", "IP"))
        if show_global:
            print(VERBOSE_ROW.format("0", "global", "running", "/", "ipkg", "shared"))
        for n in names:
            f = list_line(state, n).split(":")
            print(VERBOSE_ROW.format(f[0], n, f[2], f[3], f[5], f[6]))
    elif "p" in flags:
        if show_global:
            print("0:global:running:/::ipkg:shared:0")
        for n in names:
            print(list_line(state, n))
    else:
        if show_global:
            print("global")
        for n in names:
            print(n)
    return 0


def load_firewall(zonepath: str) -> dict[str, list[dict[str, Any]]] | str | None:
    """The READY poststate's setup_firewall: rules of ``<zonepath>/etc/ipf{,6}.conf``,
    None when there is no ipf.conf, or the failure message."""
    etc = st.host_path(zonepath) / "etc"
    if not (etc / "ipf.conf").is_file():
        return None
    rules: dict[str, list[dict[str, Any]]] = {}
    for family, name in (("ipv4", "ipf.conf"), ("ipv6", "ipf6.conf")):
        path = etc / name
        if not path.is_file():
            continue
        try:
            rules[family] = ipf.parse(path.read_text(), ipv6=family == "ipv6")
        except ipf.IpfSyntax as problem:
            return f"error loading ipf config for {'IPv6' if family == 'ipv6' else 'IPv4'}: {problem}"
    return rules


def boot_hook_fail(state: dict[str, Any], name: str, why: str) -> int:
    zone = state["zones"][name]
    log = st.host_path(zone["config"]["zonepath"]) / "log" / "zone.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"[ERROR] {why}\n")
    err(f"zone '{name}': exec /usr/lib/brand/bhyve/boot -z {name} failed")
    err(f"zoneadm: zone '{name}': call to zoneadmd failed")
    return 1


def write_seed(state: dict[str, Any], name: str, root: Path) -> None:
    """§6.1 local NoCloud mode: <zoneroot>/cloud-init/{meta-data,user-data[,network-config]}."""
    zone = state["zones"][name]
    value = attr(zone, "cloud-init")
    if value is None or value.lower() in ("off", "false", "no", "0") or value.startswith(("http://", "https://")):
        return
    tmp = root / f"cloud-init.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "meta-data").write_text(f"instance-id: {zone['uuid']}\nlocal-hostname: {name}\n")
    if value.startswith("/") and Path(value).is_file():
        shutil.copyfile(value, tmp / "user-data")
    else:  # the pitfall: a mistyped path silently falls back to generated user-data
        (tmp / "user-data").write_text(f"#cloud-config\ndisable_root: false\nhostname: {name}\n")
    final = root / "cloud-init"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def cmd_boot(state: dict[str, Any], name: str) -> int:
    zone = state["zones"][name]
    if zone["state"] in ("running", "ready"):
        err(f"zone '{name}': zone is already booted")
        return 0
    if rank(zone["state"]) < rank("installed"):
        err(f"zoneadm: zone '{name}': must be installed before boot.")
        return 1
    cfg = zone["config"]
    links = state["links"]
    for net in cfg["nets"]:
        phys = net.get("physical")
        link = links.get(phys)
        if link is None and net.get("global-nic"):
            if net["global-nic"] not in links:
                err(f"zone '{name}': failed to add network device: No such file or directory")
                err(f"zoneadm: zone '{name}': call to zoneadmd failed")
                return 1
            links[phys] = {"class": "vnic", "over": net["global-nic"], "vid": 0, "mac": "2:8:20:1:2:3",
                           "macaddrtype": "random", "zone": None}
            link = links[phys]
        if link is None or link.get("zone"):
            reason = "No such file or directory" if link is None else "Device busy"
            err(f"zone '{name}': failed to add network device: {reason}")
            err(f"zoneadm: zone '{name}': call to zoneadmd failed")
            return 1
    busy = []
    matches = [d.get("match", "") for d in cfg["devices"]]
    for value in disk_datasets(zone):
        ds = value[len("/dev/zvol/rdsk/"):] if value.startswith("/dev/zvol/rdsk/") else value
        if value.startswith("/") and not value.startswith("/dev/zvol/rdsk/"):
            return boot_hook_fail(state, name, f"disk {value} is not a zvol")
        d = state["datasets"].get(ds)
        if d is None or d["type"] != "volume":
            return boot_hook_fail(state, name, f"disk {ds} does not exist")
        path = "/dev/zvol/rdsk/" + ds
        if not any(fnmatch.fnmatch(path, m) or fnmatch.fnmatch(path[5:], m) for m in matches):
            return boot_hook_fail(state, name, f"disk {path} is not matched by a device resource")
        if d.get("in_use"):
            return boot_hook_fail(state, name, f"disk {ds} is in use")
        busy.append(ds)
    vcpus = attr(zone, "vcpus")
    if vcpus is not None and vcpus.isdigit() and not 1 <= int(vcpus) <= 32:
        return boot_hook_fail(state, name, f"Invalid vcpus value {vcpus}")
    bootrom = attr(zone, "bootrom") or "BHYVE_RELEASE_CSM"
    rom = bootrom if bootrom.startswith("/") else f"{FIRMWARE}/{bootrom.removesuffix('.fd')}.fd"
    if not st.host_path(rom).is_file():
        return boot_hook_fail(state, name, f"bootrom {bootrom} not found.")
    firewall = load_firewall(cfg["zonepath"])
    if isinstance(firewall, str):
        return boot_hook_fail(state, name, firewall)
    root = st.host_path(cfg["zonepath"]) / "root"
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "tmp" / "init.log").unlink(missing_ok=True)
    (st.host_path(cfg["zonepath"]) / "log").mkdir(parents=True, exist_ok=True)
    (st.host_path(cfg["zonepath"]) / "log" / "zone.log").write_text("")
    write_seed(state, name, root)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(root / "tmp" / "init.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.illumos.vm", name],
            cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
            # Held until the VM installed its handlers: a bhyvectl right after boot is not lost.
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2}),
        )
    started = None
    while started is None:  # /proc/<pid>/stat exists as soon as fork returns
        started = st.proc_start_time(proc.pid)
    for ds in busy:
        state["datasets"][ds]["in_use"] = True
    for net in cfg["nets"]:
        links[net["physical"]]["zone"] = name
    if firewall:
        zone["firewall"] = firewall
    zone.update(state="running", zoneid=state["next_zoneid"], vm_pid=proc.pid, vm_start=started, busy=busy)
    state["next_zoneid"] += 1
    return 0


def cmd_halt(state: dict[str, Any], name: str) -> int:
    zone = state["zones"][name]
    if zone["state"] == "installed":
        err(f"zone '{name}': zone is already halted")
        return 0
    if rank(zone["state"]) < rank("installed"):
        err(f"zone '{name}': halt operation is invalid for zones in state '{zone['state']}'")
        err(f"zoneadm: zone '{name}': call to zoneadmd failed")
        return 1
    kill_vm(zone)
    to_installed(state, name)
    return 0


def cmd_install(state: dict[str, Any], name: str, args: list[str]) -> int:
    zone = state["zones"][name]
    s = zone["state"]
    if s == "installed":
        err(f"zoneadm: zone '{name}': is already installed.")
        return 1
    if s == "incomplete":
        err(f"zoneadm: zone '{name}': zone is incomplete; uninstall required.")
        return 1
    if rank(s) > rank("installed"):
        err(f"zoneadm: zone '{name}': install operation is invalid for running zones.")
        return 1
    zonepath = zone["config"]["zonepath"]
    for other, z in state["zones"].items():
        op = z["config"]["zonepath"]
        if other != name and rank(z["state"]) >= rank("incomplete") and (
            (op + "/").startswith(zonepath + "/") or (zonepath + "/").startswith(op + "/")
        ):
            err(f"zoneadm: zone '{name}': {name} zonepath ({zonepath}) and {other} zonepath ({op}) overlap.")
            return 1
    zone["state"] = "incomplete"
    zone["uuid"] = str(uuid.uuid4())
    if args:  # the bhyve brand takes no options: createzone exits 253, zone stays incomplete
        err(f"{Path(sys.argv[0]).name}: illegal option -- {args[0].lstrip('-')[:1]}")
        err(USAGE)
        return 1
    parent_dir, base = zonepath.rsplit("/", 1)
    parent_ds = zonepath_dataset(state, parent_dir or "/")
    if parent_ds and f"{parent_ds}/{base}" not in state["datasets"]:
        state["datasets"][f"{parent_ds}/{base}"] = zfs.new_ds(state, "filesystem")
        print("A ZFS file system has been created for this zone.")
    root = st.host_path(zonepath) / "root"
    for d in ("dev", "etc", "usr", "sbin", "lib", "var/run", "tmp", "var/tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(st.host_path(zonepath), 0o700)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc" / "uuid").write_text(zone["uuid"] + "\n")
    zone["state"] = "installed"
    return 0


def cmd_uninstall(state: dict[str, Any], name: str, args: list[str]) -> int:
    zone = state["zones"][name]
    s = zone["state"]
    if s == "configured":
        err(f"zoneadm: zone '{name}': is already in state 'configured'.")
        return 1
    if s in ("ready", "running", "shutting_down", "down"):
        err(f"zoneadm: zone '{name}': uninstall operation is invalid for running zones.")
        return 1
    if "-F" not in args:
        err(f"zoneadm: zone '{name}': Input not from terminal and -F not specified: uninstall not done.")
        return 1
    zone["state"] = "incomplete"
    zonepath = zone["config"]["zonepath"]
    ds = zonepath_dataset(state, zonepath)
    if ds is not None and zfs.destroy(state, ds, recursive=True, recursive_clones=False) != 0:
        return 1  # the hook failed: the zone stays incomplete
    shutil.rmtree(st.host_path(zonepath), ignore_errors=True)
    zone["state"] = "configured"
    zone["uuid"] = ""
    return 0


def main(argv: list[str]) -> int:
    st.record_call("zoneadm", argv)
    zone = None
    args = list(argv)
    if args[:1] == ["-z"]:
        if len(args) < 3:
            return usage()
        zone, args = args[1], args[2:]
    if not args:
        return usage()
    sub, rest = args[0], args[1:]
    known = ("list", "install", "uninstall", "boot", "halt", "shutdown", "reboot", "ready", "verify")
    if sub not in known:
        err(f"zoneadm: {sub}: unknown subcommand")  # wording UNCONFIRMED
        return usage()
    if sub != "list" and zone is None:
        err(f"zoneadm: {sub} requires a zonename to be specified")  # wording UNCONFIRMED
        return usage()
    with st.locked() as state:
        rule = st.check_fault(state, "zoneadm", sub)
        if rule and zone in state["zones"] and rule.get("state"):
            z = state["zones"][zone]
            if rule["state"] == "installed" and z["state"] == "running":
                kill_vm(z)  # the zone's own halt won the race: a real halt, then this call fails
                to_installed(state, zone)
            else:
                z["state"] = rule["state"]
    if rule:
        if "exit" in rule:
            return st.apply_fault(rule)
        st.apply_fault({**rule, "stderr": ""})
    with st.locked() as state:
        if zone is not None and zone != "global" and zone not in state["zones"]:
            err(f"zoneadm: {zone}: No such zone configured")
            return 1
        if zone == "global" and sub != "list":
            err(f"zoneadm: zone 'global': {sub} operation is invalid for the global zone.")
            return 1
        if zone and zone.startswith("SUNW"):
            err(f"zoneadm: zone '{zone}': {sub} operation is invalid for zones starting with SUNW.")
            return 1
        if sub == "list":
            return cmd_list(state, zone, rest)
        assert zone is not None
        if sub == "install":
            return cmd_install(state, zone, rest)
        if sub == "uninstall":
            return cmd_uninstall(state, zone, rest)
        if sub == "boot":
            return cmd_boot(state, zone)
        if sub == "halt":
            return cmd_halt(state, zone)
        if sub == "shutdown":
            if state["zones"][zone]["state"] != "running":
                err(f"zoneadm: zone '{zone}': not running")
                return 1
            return cmd_halt(state, zone)
        if sub == "reboot":
            if state["zones"][zone]["state"] != "running":
                err(f"zoneadm: zone '{zone}': not running")
                return 1
            cmd_halt(state, zone)
            return cmd_boot(state, zone)
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
