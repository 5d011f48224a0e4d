"""Child process for the crash test: provision VMs with the bhyve driver until killed.

argv: FAKE_ROOT STATE_DIR GATEWAY_ADDRESS COUNT [STORE_DB]. Prints the VM
names as one JSON line, then prepares and boots them concurrently and waits
forever. With STORE_DB (an SQLite file) igb0 has an address pool leased there.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

from common.bootstrap import RunnerBootstrap
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.store.sqlite import SqliteStore
from tests.drivers.support import POOL, bhyve_config
from tests.fakes.illumos.host import FakeHost


async def main(root: str, state_dir: str, address: str, count: int, store_db: str | None) -> None:
    host = FakeHost(Path(root))
    if store_db is None:
        driver = BhyveDriver(bhyve_config(host, Path(state_dir)))
    else:
        driver = BhyveDriver(bhyve_config(host, Path(state_dir), links={"igb0": POOL}))
        store = SqliteStore(store_db)
        await store.open()
        driver.attach_store(store, "host-a")
    specs = [
        VmSpec.for_job(str(uuid.uuid4()), 1, "illumos-stable", RunnerBootstrap(address, f"tok{i}"))
        for i in range(count)
    ]
    print(json.dumps([s.name for s in specs]), flush=True)

    async def up(spec: VmSpec) -> None:
        await driver.prepare(spec)
        await driver.boot(spec)

    await asyncio.gather(*(up(s) for s in specs))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), (sys.argv[5:] or [None])[0]))
