"""Orphan VMs: destroyed at start-up and on a timer (buildomat-style reconcile).

The live set is what the store says this host's provisioning/running
attempts use, plus the VMs of attempts this process is handling right now
(registered before their claim, so a VM being created between the store
read and the driver listing is never mistaken for an orphan).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from orchestrator.caches.dirstore import DirectoryCaches
from orchestrator.drivers.base import Driver
from orchestrator.drivers.errors import DriverError
from orchestrator.store import Store, StoreError

log = logging.getLogger(__name__)


async def reconcile_once(store: Store, driver: Driver, host: str, local_vms: Callable[[], set[str]],
                         caches: DirectoryCaches | None = None) -> list[str]:
    """One pass: destroy every VM the driver owns that no live attempt claims; returns their names.
    The node's cache directories are reconciled too: torn saves go, repositories over their bound
    are evicted (ZFS cache disks belong to their VMs: the driver lists and destroys them)."""
    # List first, then read what is live: a VM created after the listing is
    # not in it, and one created before it is already registered as live.
    owned = await driver.list_owned()
    live = await store.live_vm_names(host) | local_vms()
    destroyed = []
    for name in sorted(owned - live):
        try:
            await driver.destroy(name)
        except DriverError as err:  # one stuck VM must not keep the others alive
            log.error("could not reap orphan VM %s: %s", name, err)
            continue
        destroyed.append(name)
    if destroyed:
        log.info("reconciled orphan VMs", extra={"fields": {"vms": ",".join(destroyed)}})
    if caches is not None:
        try:
            await caches.reconcile()
        except OSError as err:
            log.error("could not reconcile the caches: %s", err)
    return destroyed


async def reconcile_loop(store: Store, driver: Driver, host: str, local_vms: Callable[[], set[str]],
                         interval: float, caches: DirectoryCaches | None = None) -> None:
    """``reconcile_once`` every ``interval`` s; failures are logged and retried next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            await reconcile_once(store, driver, host, local_vms, caches)
        except (StoreError, DriverError) as err:
            log.error("reconciliation failed: %s", err)
