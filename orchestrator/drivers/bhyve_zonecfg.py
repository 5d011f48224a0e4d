"""The zonecfg command file of one job VM (illumos.md §1.4, §1.5, §2.2).

Conservative choices (see docs/illumos.md):

* ``create -b`` plus explicit ``brand``/``ip-type`` instead of ``create -t
  bhyve``: the lowercase-template mapping is OmniOS-only (UNCONFIRMED on Helios).
* The VNIC is created by the driver before the zone (no ``global-nic``
  on-demand VNIC), so teardown does not depend on a clean halt.
* The boot volume lives outside the zonepath (``<vm_dataset>/<vm>``): cloning
  into the zonepath before install was reported to break install (pkg5#330).
* ``console=socket,/tmp/vm.com1`` so the driver can capture the guest
  console without a tty (``zlogin -C`` needs one). Nothing may follow the
  path: illumos bhyve's socket backend takes the path only and fails device
  init on any option (``uart_backend.c`` ``uart_sock_backend``), after
  ``zoneadm boot`` has returned 0 (illumos-review.md §1.1). bhyve drops what
  the guest writes while no client is connected, so the capture connects as
  soon as the socket exists (bhyve_console.py).
* The guest's address, when its link has a pool: ``allowed-address`` and
  ``defrouter`` on the net resource and the ``resolvers``/``dns-domain``
  attributes (bhyve_net.py); the boot ROM and ``memreserve`` per image.
* Every value is double-quoted (``,`` and ``=`` would otherwise end a token);
  values never contain ``"`` because every name is validated first.
"""

from __future__ import annotations

from dataclasses import dataclass

CONSOLE_SOCKET = "/tmp/vm.com1"  # inside the zone root


@dataclass(frozen=True)
class ZoneConfig:
    """What goes into one zone's configuration; all names already validated."""

    zone: str
    zonepath: str
    vnic: str
    disk: str  # the boot zvol's dataset name
    vcpus: int
    ram: str
    user_data: str  # absolute path of the NoCloud user-data file in the global zone
    bootrom: str = "BHYVE_RELEASE"
    memreserve: bool = False
    address: str = ""  # allowed-address, "10.9.0.21/24"; "" = none (DHCP)
    gateway: str = ""  # defrouter (only with an address)
    resolvers: tuple[str, ...] = ()
    dns_domain: str = ""
    cache_disks: tuple[str, ...] = ()  # zvols of the job's caches: disk0, disk1, ... (slot 5:i)


def _quoted(value: str) -> str:
    if '"' in value or "\n" in value:
        raise ValueError(f"zonecfg value {value!r} cannot be quoted")
    return f'"{value}"'


def render_zonecfg(cfg: ZoneConfig) -> str:
    """The ``zonecfg -z NAME -f FILE`` command file; comments only on their own lines."""
    attrs = [
        ("bootdisk", cfg.disk),
        ("ram", cfg.ram),
        ("vcpus", str(cfg.vcpus)),
        ("bootrom", cfg.bootrom),
        ("cloud-init", cfg.user_data),
        ("console", f"socket,{CONSOLE_SOCKET}"),
    ]
    if cfg.memreserve:
        attrs.append(("memreserve", "on"))
    if cfg.address and cfg.resolvers:
        attrs.append(("resolvers", ",".join(cfg.resolvers)))
    if cfg.address and cfg.dns_domain:
        attrs.append(("dns-domain", cfg.dns_domain))
    net = [f"    set physical={cfg.vnic}"]
    if cfg.address:
        net.append(f"    set allowed-address={_quoted(cfg.address)}")
        if cfg.gateway:
            net.append(f"    set defrouter={_quoted(cfg.gateway)}")
    lines = [
        f"# Solstice CI job VM {cfg.zone}",
        "create -b",
        "set brand=bhyve",
        "set ip-type=exclusive",
        f"set zonepath={cfg.zonepath}",
        "set autoboot=false",
        "add net",
        *net,
        "end",
        "add device",
        f"    set match={_quoted('/dev/zvol/rdsk/' + cfg.disk)}",
        "end",
    ]
    for index, disk in enumerate(cfg.cache_disks):
        # The serial names the cache in the guest (/dev/disk/by-id/virtio-solstice-c0 on Linux).
        lines += ["add device", f"    set match={_quoted('/dev/zvol/rdsk/' + disk)}", "end"]
        attrs.append((f"disk{index}", f"{disk},serial=solstice-c{index}"))
    for name, value in attrs:
        lines += ["add attr", f"    set name={name}", "    set type=string", f"    set value={_quoted(value)}", "end"]
    lines.append("commit")
    return "\n".join(lines) + "\n"
