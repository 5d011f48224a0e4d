"""``solstice-orchestrator check``: what would fail a job on this host, from read-only probes.

Nothing is created, changed or destroyed. The result is one table: a line
per probe with its verdict (``ok``, ``warn``: jobs run but something is off,
``FAIL``: jobs would fail), what was found, and what to do about it; then a
summary. ``--json`` prints the same as a document. The exit status is 1 when
any line is ``FAIL``.

The probes per driver are registered in ``CHECKS``: the bhyve driver's live
in bhyve_check.py; another part adds lines for its driver with
``register_check(driver, probe)`` (a probe is an async function of a
``CheckContext`` returning ``CheckLine``s), without touching this module.

The local driver's probes also say whether jobs can be contained (root, PID
and mount namespaces, cgroups) and untrusted ones isolated (the job user
exists).
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.config import _build, read_yaml  # noqa: PLC2701 - the node file's drivers section only
from orchestrator.catalog import DriverConfig, LocalConfig, QemuConfig
from orchestrator.commands import CommandResult, run_command
from orchestrator.drivers.cgroups import detect
from orchestrator.drivers.errors import CommandFailed
from orchestrator.drivers.local_contain import REFUSAL, find_job_user, probe_namespaces
from orchestrator.drivers.qemu_command import choose_accel


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckLine:
    """One probe: what, the verdict, what was found, and what to do if it is not ``ok``."""

    what: str
    verdict: Verdict
    detail: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        """False only for a line that would fail jobs."""
        return self.verdict is not Verdict.FAIL


def ok(what: str, detail: str = "") -> CheckLine:
    return CheckLine(what, Verdict.OK, detail)


def warn(what: str, detail: str, fix: str = "") -> CheckLine:
    return CheckLine(what, Verdict.WARN, detail, fix)


def fail(what: str, detail: str, fix: str = "") -> CheckLine:
    return CheckLine(what, Verdict.FAIL, detail, fix)


@dataclass(frozen=True)
class NodeFacts:
    """What the check needs from the rest of the node file: how many VMs at once, what guests dial."""

    capacity: int = 4
    runner_address: str = "127.0.0.1:50051"


@dataclass(frozen=True)
class CheckContext:
    """Everything a probe may look at."""

    config: DriverConfig
    node: NodeFacts = field(default_factory=NodeFacts)
    euid: int = field(default_factory=os.geteuid)


Probe = Callable[[CheckContext], Awaitable[list[CheckLine]]]
CHECKS: dict[str, list[Probe]] = {}


def register_check(driver: str, probe: Probe) -> None:
    """Run ``probe`` when the node's driver is ``driver`` (its lines follow the ones registered before)."""
    CHECKS.setdefault(driver, []).append(probe)


async def probe_command(argv: list[str], timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    """Run a read-only command; a program that cannot start is a result with exit 127, not an error."""
    try:
        return await run_command(argv, timeout=timeout, check=False, env=env)
    except CommandFailed as err:
        return CommandResult(tuple(argv), err.exit_code, "", err.stderr or str(err), 0.0)


def last_line(result: CommandResult) -> str:
    return (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]


def load_driver_config(path: Path | None, env: Mapping[str, str] | None = None) -> DriverConfig:
    """The ``drivers`` section of the node's YAML (``SOLSTICE_DRIVERS_*`` override it)."""
    data = read_yaml(path) if path is not None else {}
    section = data.get("drivers") or {}
    # where="drivers." makes the variables SOLSTICE_DRIVERS_..., as for the whole node file.
    return _build(DriverConfig, section, os.environ if env is None else env, "SOLSTICE_", "drivers.")


def load_node_facts(path: Path | None, env: Mapping[str, str] | None = None) -> NodeFacts:
    """``node.capacity`` and the runner address (``grpc.advertise``, else ``grpc.listen``) of the node file."""
    env = os.environ if env is None else env
    data = read_yaml(path) if path is not None else {}
    node = data["node"] if isinstance(data.get("node"), dict) else {}
    grpc = data["grpc"] if isinstance(data.get("grpc"), dict) else {}
    capacity = env.get("SOLSTICE_NODE_CAPACITY") or node.get("capacity") or NodeFacts.capacity
    address = (env.get("SOLSTICE_GRPC_ADVERTISE") or grpc.get("advertise") or env.get("SOLSTICE_GRPC_LISTEN")
               or grpc.get("listen") or NodeFacts.runner_address)
    return NodeFacts(int(capacity), str(address))


async def check_local(ctx: CheckContext) -> list[CheckLine]:
    c: LocalConfig = ctx.config.local
    prog = c.runner_argv[0]
    out = [ok(f"runner {prog}", shutil.which(prog) or "") if shutil.which(prog) else
           fail(f"runner {prog}", "not on PATH", "install solstice-runner or set drivers.local.runner_argv")]
    parent = c.state_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK):
        out.append(ok(f"state directory {c.state_dir}"))
    else:
        out.append(fail(f"state directory {c.state_dir}", f"{parent} is not writable",
                        "choose a writable drivers.local.state_dir"))
    if c.isolate_network:
        # Makes a network namespace that vanishes at once: nothing on the host changes.
        what = "network isolation (unshare --net --map-root-user)"
        result = await probe_command([c.unshare, "--net", "--map-root-user", "--", "true"], 30)
        out.append(ok(what) if result.ok else fail(
            what, last_line(result), "install util-linux unshare and allow unprivileged user namespaces, "
                                     "or set drivers.local.isolate_network: false"))
    if c.contain:
        out += await asyncio.to_thread(check_containment, c)
    return out


def check_containment(c: LocalConfig) -> list[CheckLine]:
    """Whether jobs can be contained and untrusted ones isolated (local_contain.py); changes nothing.

    What is missing is a warning (trusted jobs still run, uncontained) except the last line: a node
    that cannot isolate untrusted jobs refuses them, which fails those jobs."""
    out = []
    root = os.geteuid() == 0
    what = "running as root (to contain jobs)"
    out.append(ok(what) if root else warn(what, "not root: jobs run uncontained; untrusted jobs are refused",
                                          "run the node as root"))
    problem = probe_namespaces(c.unshare)  # a namespace that vanishes at once
    what = "PID and mount namespaces (unshare --pid --mount-proc)"
    out.append(ok(what) if not problem else warn(what, problem, "install util-linux; run as root"))
    cgroups, where = detect(c.cgroup_parent, create=False)
    out.append(ok(f"cgroups: {where}") if cgroups else warn("cgroups", where, "mount cgroup v2, or the v1 "
                                                                               "memory, pids and freezer controllers"))
    user, why = find_job_user(c.job_user)
    what = f"job user {c.job_user or '(none)'}"
    out.append(ok(what) if user is not None else warn(what, why))  # why says how to create it
    mount = c.job_mount if c.job_mount.exists() else c.job_mount.parent
    usable = mount.is_dir() and os.access(mount, os.W_OK if mount != c.job_mount else os.R_OK)
    what = f"job mount point {c.job_mount}"
    out.append(ok(what) if usable else warn(what, f"{mount} is not usable", "choose drivers.local.job_mount"))
    isolated = root and not problem and cgroups is not None and user is not None and usable
    what = "untrusted jobs (fork pull requests) isolated"
    if isolated:
        out.append(ok(what))
    elif c.allow_untrusted:
        out.append(warn(what, "not isolated, and they run anyway: local.allow_untrusted is on",
                        "fix the lines above, or turn allow_untrusted off"))
    else:
        out.append(fail(what, REFUSAL, "fix the lines above"))
    return out


register_check("local", check_local)


async def check_qemu(ctx: CheckContext) -> list[CheckLine]:
    c: QemuConfig = ctx.config.qemu
    out = []
    for tool in (c.qemu, c.qemu_img, "genisoimage"):
        found = shutil.which(tool)
        out.append(ok(f"tool {tool}", found) if found else
                   fail(f"tool {tool}", "not found", "apt-get install qemu-system-x86 qemu-utils genisoimage"))
    if any(image.bootrom == "uefi" for image in c.images.values()):
        what = f"UEFI firmware {c.firmware}"
        out.append(ok(what) if c.firmware.is_file() else fail(what, "missing", "apt-get install ovmf"))
    accel = await choose_accel(c.accel, c.qemu, c.firmware) if shutil.which(c.qemu) else "none"
    what = "accelerator"
    if accel == "kvm":
        out.append(ok(what, "kvm"))
    elif accel == "none":
        out.append(fail(what, "none", f"install {c.qemu}"))
    else:
        out.append(warn(what, f"{accel}: VMs work, boots take minutes instead of seconds",
                        "use a host whose /dev/kvm runs guests"))
    if not c.images:
        out.append(fail("image catalog", "no images configured", "add drivers.qemu.images"))
    for label, image in sorted(c.images.items()):
        what = f"image {label}: {image.path}"
        out.append(ok(what) if os.access(image.path, os.R_OK) else
                   fail(what, "missing or unreadable", "solstice-image build makes it"))
    return out


register_check("qemu", check_qemu)


async def check_host(ctx: CheckContext) -> list[CheckLine]:
    """Every probe of the configured driver, in order."""
    import orchestrator.drivers.bhyve_check  # noqa: F401 - registers the bhyve probes

    probes = CHECKS.get(ctx.config.driver)
    if not probes:
        return [fail(f"driver {ctx.config.driver}", "unknown driver", f"choose one of: {', '.join(sorted(CHECKS))}")]
    lines: list[CheckLine] = []
    for probe in probes:
        lines += await probe(ctx)
    return lines


def render(lines: list[CheckLine]) -> str:
    """The table: verdict, check, what was found, and ``-> fix`` for lines that are not ok."""
    width = max((len(line.what) for line in lines), default=0)
    rows = [f"{'VERDICT':<8}{'CHECK':<{width}}  FOUND / FIX"]
    for line in lines:
        found = line.detail + (f" -> {line.fix}" if line.fix and line.verdict is not Verdict.OK else "")
        rows.append(f"{line.verdict.value:<8}{line.what:<{width}}  {found}".rstrip())
    failed = sum(line.verdict is Verdict.FAIL for line in lines)
    warned = sum(line.verdict is Verdict.WARN for line in lines)
    if failed:
        rows.append(f"{failed} problem(s) would fail jobs" + (f", {warned} warning(s)" if warned else ""))
    else:
        rows.append("host is ready" + (f" ({warned} warning(s))" if warned else ""))
    return "\n".join(rows)


def render_json(lines: list[CheckLine]) -> str:
    doc: dict[str, Any] = {
        "ready": all(line.ok for line in lines),
        "checks": [{**asdict(line), "verdict": line.verdict.name.lower()} for line in lines],
    }
    return json.dumps(doc, indent=2)


async def run_check(config_path: Path | None, as_json: bool = False) -> tuple[str, int]:
    """What ``solstice-orchestrator check`` prints, and its exit status."""
    ctx = CheckContext(load_driver_config(config_path), load_node_facts(config_path))
    lines = await check_host(ctx)
    return (render_json(lines) if as_json else render(lines)), (0 if all(line.ok for line in lines) else 1)
