"""An orchestrator killed mid-provision: a restarted one reconciles every leftover away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.registry import reconcile
from orchestrator.names import vm_name
from orchestrator.store.sqlite import SqliteStore
from tests.drivers.support import POOL, Gateway, bhyve_config
from tests.fakes.illumos.host import FakeHost
from tests.waiting import async_wait_until

REPO = Path(__file__).resolve().parents[2]


async def test_killed_mid_provision_then_reconciled(fake_host: FakeHost, gateway: Gateway, tmp_path: Path):
    """With an address pool: the killed process's leases are reclaimed with its VMs."""
    state_dir = tmp_path / "state"
    db = tmp_path / "state.db"
    async with SqliteStore(db):  # create the schema before the child opens it
        pass
    # The third install hangs, so the kill lands with VMs in every stage.
    fake_host.set_faults([{"tool": "zoneadm", "sub": "install", "nth": 3, "delay": 120}])
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("provision_child.py")),
        str(fake_host.root), str(state_dir), gateway.address, "3", str(db),
        cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        names = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))

        def stages() -> bool:
            zones = fake_host.state()["zones"]
            installs = [c for c in fake_host.calls() if c[-1] == "install"]
            running = [n for n in names if zones.get(n, {}).get("state") == "running"]
            return len(installs) == 3 and len(running) == 2

        await async_wait_until(stages, timeout=60, what="two VMs booted and one hanging in install")
        # Both booted runners call in (they are real processes in their "VMs").
        await async_wait_until(lambda: len(gateway.conns) == 2, what="two runners calling in")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    fake_host.set_faults([])
    leftovers = fake_host.owned()
    assert len(leftovers["zones"]) == 3 and len(leftovers["links"]) == 3

    async with SqliteStore(db) as store:
        leases = await store.address_leases()
        assert sorted(lease.vm_name for lease in leases) == sorted(names)
        assert len({lease.address for lease in leases}) == 3
        # A process killed right after leasing leaves nothing on the host but the lease.
        lonely = vm_name("killed-right-after-its-lease", 1)
        await store.lease_address(POOL.name, "host-a", lonely, POOL.candidates())

        restarted = BhyveDriver(bhyve_config(fake_host, state_dir, links={"igb0": POOL}))
        restarted.attach_store(store, "host-a")
        assert await restarted.list_owned() == {*names, lonely}
        # The hung install notices its parent died and exits; reconcile copes either way.
        reaped = await reconcile(restarted, set())
        assert sorted(reaped) == sorted([*names, lonely])
        assert fake_host.owned() == {"zones": [], "links": [], "datasets": []}
        assert fake_host.vm_pids() == []
        assert not any(state_dir.iterdir())
        assert await store.address_leases() == []
        await restarted.aclose()
