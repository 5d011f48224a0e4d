"""``solstice-orchestrator check``: verify a host with read-only commands.

For the bhyve driver: the four tools (plus bhyvectl) exist, the bhyve brand
is installed, ``zoneadm list`` answers, the VM and zones parent datasets exist
(the zones one mounted at ``zones_path``), every catalog image's golden
snapshot exists and is a volume snapshot, and every image's link exists.
For the local driver: the runner program can be found, the state
directory can be created, with ``isolate_network`` ``unshare`` can make
a network namespace and, with ``contain``, whether jobs can be contained
(root, PID and mount namespaces, cgroups) and untrusted ones isolated (the
job user exists). Nothing is created, changed or destroyed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.config import _build, read_yaml  # noqa: PLC2701 - the node file's drivers section only
from orchestrator.catalog import BhyveConfig, DriverConfig, LocalConfig
from orchestrator.commands import run_command
from orchestrator.drivers.cgroups import detect
from orchestrator.drivers.local_contain import REFUSAL, find_job_user, probe_namespaces
from orchestrator.drivers.errors import CommandFailed

BRAND_DIR = "usr/lib/brand/bhyve"


@dataclass(frozen=True)
class CheckResult:
    """One verified prerequisite: what, whether it holds, and what to do if not."""

    what: str
    ok: bool
    detail: str = ""


def load_driver_config(path: Path | None, env: Mapping[str, str] | None = None) -> DriverConfig:
    """The ``drivers`` section of the node's YAML (``SOLSTICE_DRIVERS_*`` override it)."""
    data = read_yaml(path) if path is not None else {}
    section = data.get("drivers") or {}
    # where="drivers." makes the variables SOLSTICE_DRIVERS_..., as for the whole node file.
    return _build(DriverConfig, section, os.environ if env is None else env, "SOLSTICE_", "drivers.")


async def _ok(argv: list[str], timeout: float) -> tuple[bool, str]:
    try:
        result = await run_command(argv, timeout=timeout, check=False)
    except CommandFailed as err:
        return False, str(err)
    detail = (result.stderr.strip().splitlines() or [""])[-1]
    return result.exit_code == 0, result.stdout if result.exit_code == 0 else detail


async def check_bhyve(c: BhyveConfig) -> list[CheckResult]:
    out: list[CheckResult] = []
    t = c.command_timeout
    for tool in (c.zonecfg, c.zoneadm, c.zfs, c.dladm, c.bhyvectl):
        present = os.access(tool, os.X_OK)
        out.append(CheckResult(f"tool {tool}", present, "" if present else "not found or not executable"))
    brand = c.fs_root / BRAND_DIR
    out.append(CheckResult("bhyve zone brand", brand.is_dir(),
                           "" if brand.is_dir() else "install it: pkg install system/zones/brand/bhyve"))
    ok, detail = await _ok([c.zoneadm, "list", "-cp"], t)
    out.append(CheckResult("zoneadm list -cp", ok, "" if ok else detail))
    for what, ds in (("VM dataset", c.vm_dataset), ("zones dataset", c.zones_dataset)):
        ok, text = await _ok([c.zfs, "list", "-H", "-o", "name,type", ds], t)
        good = ok and text.strip().split("\t")[-1] == "filesystem"
        problem = text if not ok else "not a filesystem"
        out.append(CheckResult(f"{what} {ds}", good, "" if good else f"{problem}; create it: zfs create -p {ds}"))
    ok, text = await _ok([c.zfs, "get", "-H", "-o", "value", "mountpoint", c.zones_dataset], t)
    mounted = ok and text.strip() == str(c.zones_path)
    out.append(CheckResult(f"{c.zones_dataset} mounted at {c.zones_path}", mounted,
                           "" if mounted else f"zfs set mountpoint={c.zones_path} {c.zones_dataset}"))
    if not c.images:
        out.append(CheckResult("image catalog", False, "no images configured under drivers.bhyve.images"))
    links: set[str] = set()
    for label, image in sorted(c.images.items()):
        ok, text = await _ok([c.zfs, "list", "-H", "-o", "name", "-t", "snapshot", image.source], t)
        out.append(CheckResult(f"image {label}: snapshot {image.source}", ok, "" if ok else text))
        ok, text = await _ok([c.zfs, "list", "-H", "-o", "type", image.dataset], t)
        vol = ok and text.strip() == "volume"
        out.append(CheckResult(f"image {label}: {image.dataset} is a volume", vol,
                               "" if vol else (text or "not a volume (bhyve boots from a zvol)")))
        links.add(image.link)
    for link in sorted(links):
        ok, text = await _ok([c.dladm, "show-link", "-p", "-o", "link", link], t)
        out.append(CheckResult(f"link {link}", ok, "" if ok else text))
    return out


async def check_local(c: LocalConfig) -> list[CheckResult]:
    prog = c.runner_argv[0]
    found = shutil.which(prog) is not None
    out = [CheckResult(f"runner {prog}", found, "" if found else "not on PATH")]
    parent = c.state_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    writable = os.access(parent, os.W_OK)
    out.append(CheckResult(f"state directory {c.state_dir}", writable, "" if writable else f"{parent} is not writable"))
    if c.isolate_network:
        # Makes a network namespace that vanishes at once: nothing on the host changes.
        ok, detail = await _ok([c.unshare, "--net", "--map-root-user", "--", "true"], 30)
        out.append(CheckResult("network isolation (unshare --net --map-root-user)", ok,
                               "" if ok else detail or "unshare failed"))
    if c.contain:
        out += await asyncio.to_thread(check_containment, c)
    return out


def check_containment(c: LocalConfig) -> list[CheckResult]:
    """Whether jobs can be contained and untrusted ones isolated (local_contain.py); changes nothing."""
    out = []
    root = os.geteuid() == 0
    out.append(CheckResult("running as root (to contain jobs)", root,
                           "" if root else "jobs run uncontained; untrusted jobs are refused"))
    problem = probe_namespaces(c.unshare)  # a namespace that vanishes at once
    out.append(CheckResult("PID and mount namespaces (unshare --pid --mount-proc)", not problem, problem))
    cgroups, where = detect(c.cgroup_parent, create=False)
    out.append(CheckResult(f"cgroups: {where}" if cgroups else "cgroups", cgroups is not None,
                           "" if cgroups else where))
    user, why = find_job_user(c.job_user)
    out.append(CheckResult(f"job user {c.job_user or '(none)'}", user is not None, why))
    mount = c.job_mount if c.job_mount.exists() else c.job_mount.parent
    ok = mount.is_dir() and os.access(mount, os.W_OK if mount != c.job_mount else os.R_OK)
    out.append(CheckResult(f"job mount point {c.job_mount}", ok, "" if ok else f"{mount} is not usable"))
    isolated = root and not problem and cgroups is not None and user is not None and ok
    detail = "" if isolated else (
        "they run anyway: local.allow_untrusted is on" if c.allow_untrusted else REFUSAL)
    out.append(CheckResult("untrusted jobs (fork pull requests) isolated", isolated or c.allow_untrusted, detail))
    return out


async def check_host(config: DriverConfig) -> list[CheckResult]:
    """Every prerequisite of the configured driver, in order."""
    if config.driver == "bhyve":
        return await check_bhyve(config.bhyve)
    if config.driver == "local":
        return await check_local(config.local)
    return [CheckResult(f"driver {config.driver}", False, "unknown driver; choose bhyve or local")]


def render(results: list[CheckResult]) -> str:
    lines = [f"{'ok' if r.ok else 'MISSING':8}{r.what}" + ("" if r.ok or not r.detail else f": {r.detail}")
             for r in results]
    missing = sum(not r.ok for r in results)
    lines.append("host is ready" if not missing else f"{missing} problem(s) found")
    return "\n".join(lines)
