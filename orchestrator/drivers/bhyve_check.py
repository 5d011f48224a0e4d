"""The bhyve driver's lines of ``solstice-orchestrator check`` (read-only probes, check.py).

In order: root; the tools; the brand; ``/dev/vmmctl`` and the CPU's
virtualisation; ``zoneadm`` answering; the parent datasets, the zones one
mounted at ``zones_path`` with room for the console socket path; per image
its snapshot, volume, ``disk_size``, boot ROM and runner version; per link
its presence, its pool's gateway and the route to the runner address;
``ipf`` for restricted egress; and memory for ``node.capacity`` VMs of the
largest image.
"""

from __future__ import annotations

import ipaddress
import os

from orchestrator.catalog import BhyveConfig, ImageEntry, LinkNetwork
from orchestrator.commands import CommandResult
from orchestrator.drivers.bhyve import size_bytes
from orchestrator.drivers.bhyve_console import SUN_PATH_MAX
from orchestrator.drivers.bhyve_zone import tool_env
from orchestrator.drivers.bhyve_zonecfg import CONSOLE_SOCKET
from orchestrator.drivers.check import (
    CheckContext,
    CheckLine,
    fail,
    last_line,
    ok,
    probe_command,
    register_check,
    warn,
)

BRAND_BOOT = "usr/lib/brand/bhyve/boot"
FIRMWARE = "usr/share/bhyve/firmware"
LONGEST_VM = "solstice-ffffffff-99999"
RUNNER_VERSION_PROPERTY = "solstice:runner-version"  # set on a golden image when it is imported
BOOTROM_BYTES = 16 * 2**20  # boot.py adds the ROM to a memreserve VM's reservation


async def _run(c: BhyveConfig, *argv: str) -> CommandResult:
    return await probe_command(list(argv), c.command_timeout, env=tool_env())


async def check_bhyve(ctx: CheckContext) -> list[CheckLine]:
    c = ctx.config.bhyve
    out: list[CheckLine] = []
    out.append(ok("running as root", "uid 0") if ctx.euid == 0 else fail(
        "running as root", f"uid {ctx.euid}",
        "run the orchestrator as root (the SMF manifest does): zonepaths are 0700 root and the driver reads "
        "the console socket and bhyve's logs inside them"))
    for tool in (c.zonecfg, c.zoneadm, c.zfs, c.dladm, c.bhyvectl):
        out.append(ok(f"tool {tool}") if os.access(tool, os.X_OK) else
                   fail(f"tool {tool}", "not found or not executable", "set its path under drivers.bhyve"))
    brand = c.fs_root / BRAND_BOOT
    out.append(ok("bhyve zone brand", f"/{BRAND_BOOT}") if brand.exists() else fail(
        "bhyve zone brand", f"/{BRAND_BOOT} is missing", "pkg install system/zones/brand/bhyve"))
    out += await _virtualisation(c)
    result = await _run(c, c.zoneadm, "list", "-cp")
    out.append(ok("zoneadm list -cp") if result.ok else fail("zoneadm list -cp", last_line(result),
                                                             "see svcs -xv; zoneadm must answer"))
    out += await _datasets(c)
    for label, image in sorted(c.images.items()):
        out += await _image(c, label, image)
    if not c.images:
        out.append(fail("image catalog", "no images under drivers.bhyve.images", "add a golden image per label"))
    for link in sorted({image.link for image in c.images.values()}):
        out += await _link(c, link, c.links[link], ctx.node.runner_address,
                           any(i.egress == "runner" for i in c.images.values() if i.link == link))
    if any(image.egress == "runner" for image in c.images.values()):
        ipf = c.host_tools.ipf
        out.append(ok(f"ipf for egress: runner ({ipf})") if os.access(ipf, os.X_OK) else fail(
            f"ipf for egress: runner ({ipf})", "not found",
            "pkg install network/ipfilter (the brand loads each VM's rules with it)"))
    out.append(await _memory(c, ctx.node.capacity))
    return out


async def _virtualisation(c: BhyveConfig) -> list[CheckLine]:
    vmm = c.fs_root / "dev" / "vmmctl"
    if not vmm.exists():
        return [fail("hardware virtualisation (/dev/vmmctl)", "/dev/vmmctl is missing: the vmm driver did not attach",
                     "enable VT-x/AMD-V in the firmware setup, and stop any other hypervisor holding it")]
    result = await _run(c, c.host_tools.isainfo, "-x")
    words = set(result.stdout.replace(":", " ").split())
    if not result.ok or not words & {"vmx", "svm"}:
        return [fail("hardware virtualisation (/dev/vmmctl)", "the CPU offers neither vmx nor svm (isainfo -x)",
                     "use a CPU with VT-x/EPT or AMD-V/RVI, enabled in the firmware setup")]
    return [ok("hardware virtualisation (/dev/vmmctl)", "vmx" if "vmx" in words else "svm")]


async def _datasets(c: BhyveConfig) -> list[CheckLine]:
    out = []
    for what, ds in (("VM dataset", c.vm_dataset), ("zones dataset", c.zones_dataset)):
        result = await _run(c, c.zfs, "list", "-H", "-o", "name,type", ds)
        if result.ok and result.stdout.strip().split("\t")[-1] == "filesystem":
            out.append(ok(f"{what} {ds}"))
        else:
            found = last_line(result) if not result.ok else "not a filesystem"
            out.append(fail(f"{what} {ds}", found, f"zfs create -p {ds}"))
    result = await _run(c, c.zfs, "get", "-H", "-o", "value", "mountpoint", c.zones_dataset)
    mounted = result.ok and result.stdout.strip() == str(c.zones_path)
    out.append(ok(f"{c.zones_dataset} mounted at {c.zones_path}") if mounted else fail(
        f"{c.zones_dataset} mounted at {c.zones_path}", result.stdout.strip() or last_line(result),
        f"zfs set mountpoint={c.zones_path} {c.zones_dataset}"))
    socket = f"{str(c.zones_path).rstrip('/')}/{LONGEST_VM}/root{CONSOLE_SOCKET}"
    what = "console socket path fits AF_UNIX"
    out.append(ok(what, f"{len(socket)} of {SUN_PATH_MAX} bytes") if len(socket) <= SUN_PATH_MAX else fail(
        what, f"{socket} is {len(socket)} bytes, over {SUN_PATH_MAX}",
        "mount the zones dataset at a shorter zones_path (e.g. /solstice/zones)"))
    return out


async def _image(c: BhyveConfig, label: str, image: ImageEntry) -> list[CheckLine]:
    out = []
    result = await _run(c, c.zfs, "get", "-Hp", "-o", "value", f"type,volsize,{RUNNER_VERSION_PROPERTY}",
                        image.source)
    if not result.ok:
        return [fail(f"image {label}: {image.source}", last_line(result),
                     f"import the image: zfs recv {image.dataset} and zfs snapshot {image.source}")]
    kind, volsize, version = (result.stdout.splitlines() + ["-", "-", "-"])[:3]
    parent = await _run(c, c.zfs, "list", "-H", "-o", "type", image.dataset)
    if kind != "snapshot" or parent.stdout.strip() != "volume":
        out.append(fail(f"image {label}: {image.source}", f"{image.dataset} is a {parent.stdout.strip() or kind}",
                        "bhyve boots from a ZFS volume: import the image as one (zfs create -V / zfs recv)"))
        return out
    out.append(ok(f"image {label}: {image.source}", f"volume, {int(volsize) / 2**30:g} GiB"))
    if image.disk_size and volsize.isdigit() and size_bytes(image.disk_size, "B") < int(volsize):
        out.append(fail(f"image {label}: disk_size", f"{image.disk_size} is below the image's "
                        f"{int(volsize) / 2**30:g} GiB", "raise disk_size or remove it (zfs would shrink the clone)"))
    rom = image.rom if image.rom.startswith("/") else f"/{FIRMWARE}/{image.rom}.fd"
    out.append(ok(f"image {label}: boot ROM {image.rom}") if (c.fs_root / rom.lstrip("/")).is_file() else fail(
        f"image {label}: boot ROM {image.rom}", f"{rom} is missing", "pkg install system/bhyve, or fix bootrom"))
    out.append(_runner_version(label, version))
    return out


def _runner_version(label: str, version: str) -> CheckLine:
    from common.version import VERSION

    what = f"image {label}: runner version"
    if version in ("-", ""):
        return warn(what, f"unknown (no {RUNNER_VERSION_PROPERTY} property on the image)",
                    f"zfs set {RUNNER_VERSION_PROPERTY}=<version> on the image when importing it")
    if version != VERSION:
        return warn(what, f"{version}, the orchestrator is {VERSION}", "build and import the image anew")
    return ok(what, version)


async def _link(c: BhyveConfig, link: str, net: LinkNetwork, runner: str, restricted: bool) -> list[CheckLine]:
    result = await _run(c, c.dladm, "show-link", "-p", "-o", "link", link)
    out = [ok(f"link {link}") if result.ok else fail(
        f"link {link}", last_line(result), f"dladm create-etherstub {link}, or name an existing link")]
    host = runner.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    what = f"link {link}: runner address {runner} reachable"
    if net.dhcp:
        out.append(warn(f"link {link}: addresses", "dhcp: guests need a DHCP server on this segment",
                        f"run one on {link}, or give the link a pool (cidr, gateway)"))
        if ip is None and restricted:
            out.append(fail(what, f"{host} is a name", "egress: runner needs grpc.advertise to be an IP address"))
        return out
    if net.gateway:
        alive = await _run(c, c.host_tools.ping, net.gateway, "2")
        out.append(ok(f"link {link}: gateway {net.gateway}", "answers ping") if alive.ok else fail(
            f"link {link}: gateway {net.gateway}", last_line(alive),
            f"configure {net.gateway} on {link} (ipadm create-addr -T static -a {net.gateway}/"
            f"{net.network.prefixlen} <vnic over {link}>) or fix the pool's gateway"))
    if ip is None:
        out.append((fail if restricted else warn)(
            what, f"{host} is a name; guests on {net.cidr} must resolve it",
            "set grpc.advertise to an IP address" + (" (egress: runner needs one)" if restricted else "")))
    elif ip in net.network:
        out.append(ok(what, f"on the pool's subnet {net.cidr}"))
    elif not net.gateway:
        out.append(fail(what, f"{ip} is outside {net.cidr} and the pool has no gateway",
                        "give the pool a gateway, or advertise an address inside it"))
    else:
        route = await _run(c, c.host_tools.route, "-n", "get", str(ip))
        out.append(ok(what, f"via {net.gateway}") if route.ok else fail(
            what, f"no route to {ip}: {last_line(route)}", f"route {ip} from {net.cidr} via {net.gateway}"))
    return out


async def _memory(c: BhyveConfig, capacity: int) -> CheckLine:
    images = list(c.images.values())
    largest = max((size_bytes(i.ram) + (BOOTROM_BYTES if i.memreserve else 0) for i in images), default=0)
    need = capacity * largest
    what = f"memory for {capacity} VM(s) of {largest / 2**30:g} GiB"
    result = await _run(c, c.host_tools.kstat, "-p", "unix:0:system_pages:freemem", "zfs:0:arcstats:size",
                        "zfs:0:arcstats:c_min")
    stats = dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
    if "unix:0:system_pages:freemem" not in stats:
        return fail(what, f"kstat gave no freemem: {last_line(result)}", "check /usr/bin/kstat")
    free = int(stats["unix:0:system_pages:freemem"]) * os.sysconf("SC_PAGE_SIZE")
    arc = max(0, int(stats.get("zfs:0:arcstats:size", 0)) - int(stats.get("zfs:0:arcstats:c_min", 0)))
    found = (f"{free / 2**30:.1f} GiB free, {arc / 2**30:.1f} GiB more the ARC can give back, "
             f"{need / 2**30:g} GiB needed")
    if free >= need:
        return ok(what, found)
    fix = "lower node.capacity, use smaller images, or cap the ARC (zfs_arc_max)"
    if free + arc >= need:
        return warn(what, found + ": boots wait for the ARC to shrink (bhyve retries ENOMEM)", fix)
    return fail(what, found + ": bhyve would loop on ENOMEM and the jobs fail", fix)


register_check("bhyve", check_bhyve)
