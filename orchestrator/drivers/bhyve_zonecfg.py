"""The zonecfg command file of one job VM (illumos.md §1.4, §1.5, §2.2).

Conservative choices (see docs/illumos.md):

* ``create -b`` plus explicit ``brand``/``ip-type`` instead of ``create -t
  bhyve``: the lowercase-template mapping is OmniOS-only (UNCONFIRMED on Helios).
* The VNIC is created by the driver before the zone (no ``global-nic``
  on-demand VNIC), so teardown does not depend on a clean halt.
* The boot volume lives outside the zonepath (``<vm_dataset>/<vm>``): cloning
  into the zonepath before install was reported to break install (pkg5#330).
* ``console=socket,/tmp/vm.com1,wait`` so the driver can capture the guest
  console without a tty (``zlogin -C`` needs one), and so bhyve holds the
  guest until the driver's capture is connected: whether output written with
  no client connected is kept is UNCONFIRMED, and the first lines of a guest
  that dies at once are the ones an error report needs.
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
        ("cloud-init", cfg.user_data),
        ("console", f"socket,{CONSOLE_SOCKET},wait"),
    ]
    lines = [
        f"# Solstice CI job VM {cfg.zone}",
        "create -b",
        "set brand=bhyve",
        "set ip-type=exclusive",
        f"set zonepath={cfg.zonepath}",
        "set autoboot=false",
        "add net",
        f"    set physical={cfg.vnic}",
        "end",
        "add device",
        f"    set match={_quoted('/dev/zvol/rdsk/' + cfg.disk)}",
        "end",
    ]
    for name, value in attrs:
        lines += ["add attr", f"    set name={name}", "    set type=string", f"    set value={_quoted(value)}", "end"]
    lines.append("commit")
    return "\n".join(lines) + "\n"
