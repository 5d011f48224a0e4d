"""One control group per local job: its limits, and a kill that reaches every process in it.

Two back-ends, chosen once at start by ``detect``:

* ``CgroupV2``: the unified hierarchy, where it offers the ``memory`` and
  ``pids`` controllers. ``memory.max``, ``pids.max``; teardown writes
  ``cgroup.kill`` (Linux 5.14+; older kernels freeze and SIGKILL each member).
* ``CgroupV1``: the ``memory``, ``pids`` and ``freezer`` controller
  hierarchies (a host still on v1, or a hybrid one whose controllers are
  bound to v1, like most container hosts). ``memory.limit_in_bytes``,
  ``pids.max``; teardown freezes the group, SIGKILLs every member and thaws it,
  so nothing forks while it is being killed.

Job groups live under ``<parent>/<vm>`` in each hierarchy, where ``parent`` is
the orchestrator's own group plus ``solstice`` by default (so its own limits
also bind its jobs) or the configured ``cgroup_parent``. A process joins a job
group by writing ``0`` ("myself") to each ``cgroup.procs`` listed by
``procs_files`` before it starts anything: the job's namespace init does that
first thing, so no process of the job ever runs outside it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.drivers.errors import DriverError
from orchestrator.names import is_vm_name, validate_vm_name

log = logging.getLogger(__name__)

V1_CONTROLLERS = ("memory", "pids", "freezer")
V2_CONTROLLERS = ("memory", "pids")
PARENT = "solstice"
KILL_WAIT = 5.0  # a group whose members are SIGKILLed is empty well within this


class CgroupError(DriverError):
    """A job's control group could not be created, limited, killed or removed."""


@dataclass(frozen=True)
class Limits:
    """What one job may use: bytes of memory (RAM + kernel memory of its processes) and tasks."""

    memory_bytes: int
    pids: int


class Cgroups(Protocol):
    """The job groups of this node in one cgroup hierarchy (version)."""

    version: str

    def describe(self) -> str:
        """Where the groups live, for the start-up log line."""
        ...

    def create(self, vm: str, limits: Limits) -> None:
        """Create the job's group with its limits (an existing one is reused)."""
        ...

    def procs_files(self, vm: str) -> list[Path]:
        """The ``cgroup.procs`` files a process writes ``0`` to in order to join the group."""
        ...

    def members(self, vm: str) -> list[int]:
        """Pids in the job's group (host pid numbers); empty once it is gone."""
        ...

    def kill(self, vm: str) -> None:
        """SIGKILL every process in the group, whatever it does meanwhile; returns once it is empty."""
        ...

    def remove(self, vm: str) -> None:
        """Remove the (empty) group. Idempotent."""
        ...

    def owned(self) -> set[str]:
        """Names of every job group under the parent."""
        ...


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as err:
        raise CgroupError(f"cannot write {value.strip()!r} to {path}: {err.strerror}") from err


def _pids(procs: Path) -> list[int]:
    try:
        return [int(p) for p in procs.read_text().split()]
    except FileNotFoundError:
        return []
    except OSError as err:
        raise CgroupError(f"cannot read {procs}: {err.strerror}") from err


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_empty(procs: Path, what: str) -> None:
    deadline = time.monotonic() + KILL_WAIT
    while _pids(procs):
        if time.monotonic() > deadline:
            raise CgroupError(f"the processes of {what} did not die within {KILL_WAIT:g}s of SIGKILL")
        _kill_all(_pids(procs))
        time.sleep(0.01)


def _rmdir(path: Path) -> None:
    # A group stays busy for a moment after its last member died, until the
    # zombie is reaped by its parent (unshare, outside the group).
    deadline = time.monotonic() + KILL_WAIT
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove the control group {path}: {err.strerror}") from err
        time.sleep(0.01)


def _owned(parent: Path) -> set[str]:
    try:
        return {p.name for p in parent.iterdir() if p.is_dir() and is_vm_name(p.name)}
    except FileNotFoundError:
        return set()


class CgroupV2:
    """Job groups in the unified (v2) hierarchy, under ``parent``."""

    version = "v2"

    def __init__(self, parent: Path, limits_enforced: bool = True) -> None:
        self.parent = parent
        self.limits_enforced = limits_enforced  # False: no memory/pids controllers (kill and tracking only)

    def describe(self) -> str:
        return f"cgroup v2 at {self.parent}" + ("" if self.limits_enforced else " (no memory/pids controllers)")

    def _dir(self, vm: str) -> Path:
        return self.parent / validate_vm_name(vm)

    def create(self, vm: str, limits: Limits) -> None:
        group = self._dir(vm)
        try:
            group.mkdir(exist_ok=True)
        except OSError as err:
            raise CgroupError(f"cannot create the control group {group}: {err.strerror}") from err
        if self.limits_enforced:
            _write(group / "memory.max", f"{limits.memory_bytes}\n")
            if (group / "memory.swap.max").exists():  # the limit is on RAM + swap, as on v1
                _write(group / "memory.swap.max", "0\n")
            _write(group / "pids.max", f"{limits.pids}\n")

    def procs_files(self, vm: str) -> list[Path]:
        return [self._dir(vm) / "cgroup.procs"]

    def members(self, vm: str) -> list[int]:
        return _pids(self._dir(vm) / "cgroup.procs")

    def kill(self, vm: str) -> None:
        group = self._dir(vm)
        if not group.exists():
            return
        if (group / "cgroup.kill").exists():
            _write(group / "cgroup.kill", "1\n")
        else:  # before Linux 5.14: freeze, kill each member, thaw
            _write(group / "cgroup.freeze", "1\n")
            _kill_all(self.members(vm))
            _write(group / "cgroup.freeze", "0\n")
        _wait_empty(group / "cgroup.procs", f"job {vm}")

    def remove(self, vm: str) -> None:
        _rmdir(self._dir(vm))

    def owned(self) -> set[str]:
        return _owned(self.parent)


class CgroupV1:
    """Job groups in the v1 ``memory``, ``pids`` and ``freezer`` hierarchies, one parent in each."""

    version = "v1"

    def __init__(self, parents: dict[str, Path]) -> None:
        missing = [c for c in V1_CONTROLLERS if c not in parents]
        if missing:
            raise CgroupError(f"cgroup v1 needs the {', '.join(missing)} controller(s)")
        self.parents = parents

    def describe(self) -> str:
        return "cgroup v1 (" + ", ".join(f"{c} at {p}" for c, p in self.parents.items()) + ")"

    def _dirs(self, vm: str) -> dict[str, Path]:
        validate_vm_name(vm)
        return {c: p / vm for c, p in self.parents.items()}

    def create(self, vm: str, limits: Limits) -> None:
        dirs = self._dirs(vm)
        for group in dirs.values():
            try:
                group.mkdir(exist_ok=True)
            except OSError as err:
                raise CgroupError(f"cannot create the control group {group}: {err.strerror}") from err
        memory = dirs["memory"]
        _write(memory / "memory.limit_in_bytes", f"{limits.memory_bytes}\n")
        # With swap accounting, also cap RAM + swap, or the job swaps past its limit.
        if (memory / "memory.memsw.limit_in_bytes").exists():
            _write(memory / "memory.memsw.limit_in_bytes", f"{limits.memory_bytes}\n")
        _write(dirs["pids"] / "pids.max", f"{limits.pids}\n")

    def procs_files(self, vm: str) -> list[Path]:
        return [d / "cgroup.procs" for d in self._dirs(vm).values()]

    def members(self, vm: str) -> list[int]:
        return _pids(self._dirs(vm)["freezer"] / "cgroup.procs")

    def kill(self, vm: str) -> None:
        freezer = self._dirs(vm)["freezer"]
        if not freezer.exists():
            return
        state = freezer / "freezer.state"
        _write(state, "FROZEN\n")
        deadline = time.monotonic() + KILL_WAIT
        # FREEZING until every member stopped; a frozen task cannot fork, so one pass kills them all.
        while state.read_text().strip() != "FROZEN" and time.monotonic() < deadline:
            time.sleep(0.005)
        _kill_all(self.members(vm))
        _write(state, "THAWED\n")  # SIGKILL is delivered once the tasks run again
        _wait_empty(freezer / "cgroup.procs", f"job {vm}")

    def remove(self, vm: str) -> None:
        for group in self._dirs(vm).values():
            _rmdir(group)

    def owned(self) -> set[str]:
        names: set[str] = set()
        for parent in self.parents.values():
            names |= _owned(parent)
        return names


@dataclass(frozen=True)
class _Mount:
    kind: str  # "cgroup" (v1) or "cgroup2"
    point: Path
    controllers: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fstype, _source, options = (right.split(" ") + ["", ""])[:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        point = Path(left.split(" ")[4].replace("\\040", " "))
        controllers = frozenset(options.split(",")) if fstype == "cgroup" else frozenset()
        found.append(_Mount(fstype, point, controllers))
    return found


def _own_paths(proc_cgroup: str) -> tuple[dict[str, str], str | None]:
    """This process's group per v1 controller, and in the v2 hierarchy (``0::/path``)."""
    v1: dict[str, str] = {}
    v2 = None
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers:
            v2 = path
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    return v1, v2


def _under(point: Path, own: str, configured: str) -> Path:
    if configured:
        return point / configured.strip("/")
    return point / own.lstrip("/") / PARENT


def _v2(mount: _Mount, own: str, configured: str, create: bool) -> CgroupV2 | None:
    """A v2 back-end if the hierarchy offers memory and pids below our group, else None."""
    parent = _under(mount.point, own, configured)
    base = parent.parent
    try:
        available = set((base / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    if not set(V2_CONTROLLERS) <= available:
        return None
    if not create:
        return CgroupV2(parent)
    enable = " ".join(f"+{c}" for c in V2_CONTROLLERS) + "\n"
    try:
        # Our group hands memory and pids down to `solstice`, which hands them to each job.
        try:
            _write(base / "cgroup.subtree_control", enable)
        except CgroupError:
            if configured:
                raise
            _leave_for_a_leaf(base)  # the "no internal processes" rule: we are in the way
            _write(base / "cgroup.subtree_control", enable)
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", enable)
    except (OSError, CgroupError) as err:
        log.warning("cgroup v2 at %s cannot delegate memory and pids: %s; name a delegated cgroup "
                    "in drivers.local.cgroup_parent (a systemd service: Delegate=yes)", base, err)
        return None
    return CgroupV2(parent)


def _leave_for_a_leaf(group: Path) -> None:
    """Move this process into ``<group>/orchestrator``, so ``group`` may delegate controllers.

    A v2 group with processes of its own cannot hand controllers to children.
    When the node is alone in its group (a systemd service with
    ``Delegate=yes``, as systemd documents it) it moves itself to a leaf; a
    group shared with other processes (a login shell's) is not ours to change.
    """
    members = _pids(group / "cgroup.procs")
    if members != [os.getpid()]:
        raise CgroupError(f"{group} holds other processes than this one ({len(members)} in all)")
    leaf = group / "orchestrator"
    try:
        leaf.mkdir(exist_ok=True)
    except OSError as err:
        raise CgroupError(f"cannot create {leaf}: {err.strerror}") from err
    _write(leaf / "cgroup.procs", f"{os.getpid()}\n")
    log.info("moved this process to %s so that %s can delegate memory and pids to jobs", leaf, group)


def detect(configured_parent: str = "", mountinfo: str | None = None,
           proc_cgroup: str | None = None, create: bool = True) -> tuple[Cgroups | None, str]:
    """The back-end this host offers, and a sentence saying which (or why none).

    v2 is preferred when its hierarchy has the memory and pids controllers;
    otherwise the v1 memory, pids and freezer hierarchies. With ``create``
    the parents are made here (the only change to the host's cgroup tree at
    start); without it (``check``) nothing is changed and the answer may be
    too hopeful where v2 would refuse to delegate.
    """
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
        proc_cgroup = Path("/proc/self/cgroup").read_text() if proc_cgroup is None else proc_cgroup
    except OSError as err:
        return None, f"no cgroups: cannot read /proc ({err.strerror})"
    mounts = _mounts(mountinfo)
    own_v1, own_v2 = _own_paths(proc_cgroup)
    for mount in mounts:
        if mount.kind == "cgroup2" and own_v2 is not None:
            v2 = _v2(mount, own_v2, configured_parent, create)
            if v2 is not None:
                return v2, v2.describe()
    parents: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        found = next((m for m in mounts if m.kind == "cgroup" and controller in m.controllers), None)
        if found is None or controller not in own_v1:
            continue
        parent = _under(found.point, own_v1[controller], configured_parent)
        if create:
            try:
                parent.mkdir(exist_ok=True)
            except OSError as err:
                return None, f"no usable cgroups: cannot create {parent}: {err.strerror}"
        elif not os.access(parent if parent.exists() else parent.parent, os.W_OK):
            return None, f"no usable cgroups: {parent} cannot be created"
        parents[controller] = parent
    missing = [c for c in V1_CONTROLLERS if c not in parents]
    if missing:
        return None, ("no usable cgroups: neither cgroup v2 with memory and pids nor the v1 "
                      f"{', '.join(missing)} controller(s)")
    v1 = CgroupV1(parents)
    return v1, v1.describe()
