"""Reconciliation: at start-up and on a timer, VMs the driver owns that no live job claims are
destroyed; VMs of live jobs never are."""

from __future__ import annotations

from pathlib import Path

from common.config import Seconds
from orchestrator.names import vm_name
from orchestrator.node.testing import recorded_vms
from orchestrator.store import JobState
from tests.node.harness import job, local_node, local_settings
from tests.waiting import async_wait_until


async def test_orphans_are_destroyed_at_start_and_on_the_timer_live_vms_never(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timers__reconcile=Seconds(0.2))
    vms = settings.drivers.local.state_dir
    stale = [vm_name("crashed-1", 1), vm_name("crashed-2", 3)]
    for name in stale:
        (vms / name).mkdir(parents=True)
    (vms / "not-ours").mkdir()  # a name the driver never generates is never touched
    async with local_node(settings) as node:
        # start-up pass: done before the node takes work
        assert sorted(node.driver.destroyed) == sorted(stale)
        assert not any((vms / name).exists() for name in stale)

        await node.publish(job("long", steps=("sleep 2",)))
        live = vm_name("long", 1)
        await async_wait_until(lambda: live in recorded_vms(vms), what="the live VM")
        # an orphan that appears while the node runs (a VM left by a crashed teardown)
        late = vm_name("leaked", 1)
        (vms / late).mkdir()
        await async_wait_until(lambda: late in node.driver.destroyed, timeout=20, what="the timer pass")
        assert not (vms / late).exists()
        record = await async_wait_until(lambda: _done(node.store, "long"), what="the long job")
        assert record.state is JobState.SUCCEEDED  # several timer passes ran while it ran
        assert node.driver.destroyed.count(live) == 1  # destroyed once: by its own teardown
        assert recorded_vms(vms) == set()
        assert node.driver.events.index(("destroy", late)) < node.driver.events.index(("destroy", live))
    assert (vms / "not-ours").exists()


async def _done(store, job_id):  # type: ignore[no-untyped-def]
    record = await store.get_job(job_id)
    return record if record is not None and record.terminal else None


async def test_vm_of_a_job_the_store_says_is_live_here_is_kept(tmp_path: Path) -> None:
    """A VM claimed in the store by this host survives a pass even when this process does not run it."""
    from orchestrator.node.reconcile import reconcile_once
    from orchestrator.store import open_store
    from tests.node.harness import InstantDriver

    driver = InstantDriver(tmp_path / "vms")
    claimed, orphan, elsewhere = vm_name("j1", 1), vm_name("j2", 1), vm_name("j3", 1)
    for name in (claimed, orphan, elsewhere):
        (tmp_path / "vms" / name).mkdir(parents=True)
    async with open_store(f"sqlite://{tmp_path}/state.db") as store:
        await store.register_host("node-a", ["lab-a"], 2)
        await store.register_host("node-b", ["lab-a"], 2)
        for jid, host, vm in (("j1", "node-a", claimed), ("j3", "node-b", elsewhere)):
            await store.submit(job(jid))
            assert await store.claim(jid, 1, host, vm)
        gone = await reconcile_once(store, driver, "node-a", set)
        # j3's VM is claimed by node-b, not by this host: on this host it is an orphan.
        assert sorted(gone) == sorted([orphan, elsewhere])
        assert (tmp_path / "vms" / claimed).exists()
        # once the claim ends, the next pass takes it
        assert await store.transition("j1", 1, JobState.ERRORED, "test")
        assert await reconcile_once(store, driver, "node-a", set) == [claimed]
