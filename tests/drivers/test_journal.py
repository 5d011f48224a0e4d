"""``VmJournal``: the instant driver's record of its VMs survives the process, stays small,
and a torn line costs only that line."""

from __future__ import annotations

from pathlib import Path

from common.bootstrap import RunnerBootstrap
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.journal import FILE_NAME, VmJournal, read_journal
from orchestrator.names import vm_name
from orchestrator.node.testing import InstantDriver, recorded_vms

A, B, C = (vm_name(j, 1) for j in ("a", "b", "c"))


def test_adds_and_removes_survive_a_new_process(tmp_path: Path) -> None:
    journal = VmJournal(tmp_path / "vms")
    assert journal.names() == set()
    assert not (tmp_path / "vms").exists()  # nothing written until a VM is recorded
    journal.add(A)
    journal.add(B)
    journal.add(A)  # twice: still one VM, one line
    journal.remove(B)
    journal.remove(C)  # never added: nothing to write
    assert journal.names() == {A}
    assert (tmp_path / "vms" / FILE_NAME).read_text() == f"+{A}\n+{B}\n-{B}\n"
    # no close(): what a SIGKILLed node leaves is what the next one reads
    again = VmJournal(tmp_path / "vms")
    assert again.names() == {A}
    again.remove(A)
    assert read_journal(tmp_path / "vms" / FILE_NAME) == set()


def test_compaction_keeps_only_the_live_vms(tmp_path: Path) -> None:
    journal = VmJournal(tmp_path, compact_after=10)
    for n in range(25):
        journal.add(vm_name(f"job{n}", 1))
        if n % 2:
            journal.remove(vm_name(f"job{n}", 1))
    live = {vm_name(f"job{n}", 1) for n in range(0, 25, 2)}
    assert journal.names() == live == read_journal(tmp_path / FILE_NAME)
    lines = (tmp_path / FILE_NAME).read_text().splitlines()
    assert len(lines) < 10 + len(live)  # rewritten, not every line since the start
    journal.close()
    assert VmJournal(tmp_path).names() == live


def test_a_torn_or_foreign_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text(f"+{A}\n+not-a-vm\n?{B}\n+{B}\n-{A}\n+{C[:-3]}")
    assert read_journal(tmp_path / FILE_NAME) == {B}


async def test_the_instant_driver_records_each_vm_until_destroyed(tmp_path: Path) -> None:
    driver = InstantDriver(tmp_path / "vms")
    spec = VmSpec(A, "a", 1, "lab", RunnerBootstrap("127.0.0.1:1", "token"))
    (tmp_path / "vms").mkdir()
    (tmp_path / "vms" / B).mkdir()  # a VM of an older run, kept as a directory
    await driver.prepare(spec)
    assert await driver.list_owned() == {A, B} == recorded_vms(tmp_path / "vms")
    await driver.destroy(A)
    await driver.destroy(B)
    assert await driver.list_owned() == set() == recorded_vms(tmp_path / "vms")
    await driver.aclose()
