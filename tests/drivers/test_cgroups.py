"""Which cgroup back-end a host offers, and the v2 kill, on real hierarchies where this machine has them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.drivers import cgroups
from orchestrator.drivers.cgroups import CgroupV1, CgroupV2, Limits, detect
from tests.waiting import wait_until

VM = "solstice-0badcafe-1"


def mountinfo(*mounts: tuple[str, str, str]) -> str:
    """/proc/self/mountinfo lines for (mount point, fstype, super options)."""
    return "\n".join(f"{30 + i} 25 0:{40 + i} / {point} rw,relatime - {fstype} {fstype} {options}"
                     for i, (point, fstype, options) in enumerate(mounts))


def test_v2_is_chosen_where_the_unified_hierarchy_offers_memory_and_pids(tmp_path: Path):
    root = tmp_path / "cgroup"
    (root / "system.slice").mkdir(parents=True)
    (root / "system.slice" / "cgroup.controllers").write_text("cpu io memory pids\n")
    (root / "system.slice" / "cgroup.subtree_control").write_text("")
    found, what = detect(mountinfo=mountinfo((str(root), "cgroup2", "rw")), proc_cgroup="0::/system.slice\n")
    assert isinstance(found, CgroupV2)
    assert found.parent == root / "system.slice" / "solstice"
    assert what == f"cgroup v2 at {root / 'system.slice' / 'solstice'}"
    # memory and pids handed down: to `solstice`, and from it to each job
    assert (root / "system.slice" / "cgroup.subtree_control").read_text() == "+memory +pids\n"
    assert (found.parent / "cgroup.subtree_control").read_text() == "+memory +pids\n"


def test_a_hybrid_host_without_v2_controllers_uses_the_v1_hierarchies(tmp_path: Path):
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("")  # every controller is bound to v1
    mounts = [(str(unified), "cgroup2", "rw")]
    for controller in ("memory", "pids", "freezer", "cpu"):
        (tmp_path / controller).mkdir()
        mounts.append((str(tmp_path / controller), "cgroup", f"rw,{controller}"))
    (tmp_path / "memory" / "process_api" / "abc").mkdir(parents=True)  # the node's own memory cgroup
    own = "0::/\n4:memory:/process_api/abc\n8:pids:/\n6:freezer:/\n1:cpu:/\n"
    found, what = detect(mountinfo=mountinfo(*mounts), proc_cgroup=own)
    assert isinstance(found, CgroupV1)
    assert found.parents == {"memory": tmp_path / "memory" / "process_api" / "abc" / "solstice",
                             "pids": tmp_path / "pids" / "solstice", "freezer": tmp_path / "freezer" / "solstice"}
    assert what.startswith("cgroup v1 (memory at ")
    assert found.parents["pids"].is_dir()


def test_no_usable_cgroups_is_said_not_guessed(tmp_path: Path):
    (tmp_path / "pids").mkdir()
    found, what = detect(mountinfo=mountinfo((str(tmp_path / "pids"), "cgroup", "rw,pids")),
                         proc_cgroup="8:pids:/\n")
    assert found is None
    assert what == ("no usable cgroups: neither cgroup v2 with memory and pids nor the v1 memory, "
                    "freezer controller(s)")


def test_check_detects_without_creating_anything(tmp_path: Path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "pids").mkdir()
    (tmp_path / "freezer").mkdir()
    mounts = mountinfo(*((str(tmp_path / c), "cgroup", f"rw,{c}") for c in ("memory", "pids", "freezer")))
    found, _ = detect(mountinfo=mounts, proc_cgroup="1:memory:/\n2:pids:/\n3:freezer:/\n", create=False)
    assert isinstance(found, CgroupV1)
    assert not any((tmp_path / c / "solstice").exists() for c in ("memory", "pids", "freezer"))


UNIFIED = Path("/sys/fs/cgroup/unified")


@pytest.mark.skipif(os.geteuid() != 0 or not (UNIFIED / "cgroup.procs").exists(),
                    reason="needs root and a cgroup2 hierarchy at /sys/fs/cgroup/unified")
def test_the_v2_kill_empties_a_real_group(tmp_path: Path):
    """On this machine's (controller-less) unified hierarchy: cgroup.kill reaches every member,
    also one in a new session that ignores SIGTERM."""
    parent = UNIFIED / f"solstice-test-{os.getpid()}"
    parent.mkdir()
    groups = CgroupV2(parent, limits_enforced=False)
    try:
        groups.create(VM, Limits(1 << 30, 100))
        [procs] = groups.procs_files(VM)
        proc = subprocess.Popen(["sh", "-c", f'echo 0 > {procs}; setsid sh -c \'trap "" TERM; sleep 300\' & '
                                             "sleep 300"])
        wait_until(lambda: len(groups.members(VM)) >= 3, 10, "the group's members")
        assert groups.owned() == {VM}
        groups.kill(VM)
        assert groups.members(VM) == []
        assert proc.wait(10) == -9
        groups.remove(VM)
        assert groups.owned() == set()
    finally:
        groups.kill(VM)  # whatever a failed assertion left
        groups.remove(VM)
        parent.rmdir()


class FakeCgroupfs:
    """The kernel's cgroup v2 rules that matter here, over a directory tree: a write to cgroup.procs
    moves the process, and a group with processes of its own cannot enable controllers for children."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, path: Path, value: str) -> None:
        if path.name == "cgroup.procs":
            pid = value.strip()
            for procs in self.root.rglob("cgroup.procs"):
                procs.write_text("".join(f"{p}\n" for p in procs.read_text().split() if p != pid))
            path.write_text(path.read_text() + f"{pid}\n" if path.exists() else f"{pid}\n")
        elif path.name == "cgroup.subtree_control" and self.members(path.parent):
            raise cgroups.CgroupError(f"cannot write {value.strip()!r} to {path}: Device or resource busy")
        else:
            path.write_text(value)

    @staticmethod
    def members(group: Path) -> list[str]:
        procs = group / "cgroup.procs"  # the kernel makes it with the group
        return procs.read_text().split() if procs.exists() else []


def v2_host(tmp_path: Path, members: list[int]) -> Path:
    own = tmp_path / "cgroup" / "system.slice" / "solstice.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.procs").write_text("".join(f"{p}\n" for p in members))
    return own


def test_a_node_alone_in_its_v2_group_moves_itself_to_a_leaf_to_delegate(tmp_path: Path, monkeypatch):
    own = v2_host(tmp_path, [os.getpid()])  # a systemd service with Delegate=yes
    monkeypatch.setattr(cgroups, "_write", FakeCgroupfs(tmp_path).write)
    found, _ = detect(mountinfo=mountinfo((str(tmp_path / "cgroup"), "cgroup2", "rw")),
                      proc_cgroup="0::/system.slice/solstice.service\n")
    assert isinstance(found, CgroupV2) and found.parent == own / "solstice"
    assert (own / "orchestrator" / "cgroup.procs").read_text() == f"{os.getpid()}\n"
    assert (own / "cgroup.procs").read_text() == ""
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids\n"


def test_a_v2_group_shared_with_other_processes_is_left_alone(tmp_path: Path, monkeypatch, caplog):
    own = v2_host(tmp_path, [os.getpid(), 1])  # e.g. started from a login shell's scope
    monkeypatch.setattr(cgroups, "_write", FakeCgroupfs(tmp_path).write)
    found, what = detect(mountinfo=mountinfo((str(tmp_path / "cgroup"), "cgroup2", "rw")),
                         proc_cgroup="0::/system.slice/solstice.service\n")
    assert found is None
    assert not (own / "orchestrator").exists() and (own / "cgroup.procs").read_text().split() == [str(os.getpid()), "1"]
    assert any("name a delegated cgroup in drivers.local.cgroup_parent" in r.getMessage() for r in caplog.records)
