"""Child process for the crash test: provision VMs with the bhyve driver until killed.

argv: FAKE_ROOT STATE_DIR GATEWAY_ADDRESS COUNT. Prints the VM names as one
JSON line, then prepares and boots them concurrently and waits forever.
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
from tests.drivers.support import bhyve_config
from tests.fakes.illumos.host import FakeHost


async def main(root: str, state_dir: str, address: str, count: int) -> None:
    driver = BhyveDriver(bhyve_config(FakeHost(Path(root)), Path(state_dir)))
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
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
