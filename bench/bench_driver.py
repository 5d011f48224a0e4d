"""VM driver overhead per phase: the driver's own cost with zero-latency fake tools.

Run: .venv/bin/python bench/bench_driver.py [--vms N] [--concurrency N]

For the bhyve driver the illumos tools are the fakes of tests/fakes/illumos:
they do no real work, but each is a Python process (tens of ms to start), so
the time spent inside every external command is measured and subtracted:
"driver ms" is a phase's wall time minus its time in tools - the driver's own
overhead (rendering, files, state polling, the event loop). For the local
driver the "runner" is a process that waits to be killed. Each VM goes
through prepare -> boot -> stop -> destroy; per phase the table shows the mean
and worst wall time per VM, commands per VM, time in tools and the driver's
own share. Not part of the test suite; prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.bootstrap import RunnerBootstrap  # noqa: E402
from orchestrator.catalog import LocalConfig  # noqa: E402
from orchestrator.commands import run_command  # noqa: E402
from orchestrator.drivers import bhyve as bhyve_module  # noqa: E402
from orchestrator.drivers.base import VmSpec  # noqa: E402
from orchestrator.drivers.bhyve import BhyveDriver  # noqa: E402
from orchestrator.drivers.local import LocalDriver  # noqa: E402
from tests.drivers.support import bhyve_config, seed  # noqa: E402
from tests.fakes.illumos.host import FakeHost  # noqa: E402

PHASES = ("prepare", "boot", "stop", "destroy")
PHASE: contextvars.ContextVar[str] = contextvars.ContextVar("phase", default="?")


class Tally:
    """Per phase: wall seconds of each VM, and the commands run with their seconds."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = defaultdict(list)
        self.cmds: dict[str, int] = defaultdict(int)
        self.cmd_seconds: dict[str, float] = defaultdict(float)


TALLY = Tally()


async def timed_run_command(argv, **kw):  # type: ignore[no-untyped-def]
    """run_command, with the time spent in the external tool charged to the current phase."""
    t0 = time.perf_counter()
    try:
        return await run_command(argv, **kw)
    finally:
        TALLY.cmds[PHASE.get()] += 1
        TALLY.cmd_seconds[PHASE.get()] += time.perf_counter() - t0


def spec() -> VmSpec:
    return VmSpec.for_job(str(uuid.uuid4()), 1, "illumos-stable", RunnerBootstrap("127.0.0.1:9", "tok"))


async def lifecycle(driver, sem: asyncio.Semaphore) -> None:  # type: ignore[no-untyped-def]
    s = spec()
    async with sem:
        for phase in PHASES:
            PHASE.set(phase)
            t0 = time.perf_counter()
            if phase in ("prepare", "boot"):
                await getattr(driver, phase)(s)
            else:
                await getattr(driver, phase)(s.name)
            TALLY.wall[phase].append(time.perf_counter() - t0)


async def bench(name: str, driver, vms: int, concurrency: int) -> None:  # type: ignore[no-untyped-def]
    global TALLY
    TALLY = Tally()
    sem = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()
    await asyncio.gather(*(lifecycle(driver, sem) for _ in range(vms)))
    total = time.perf_counter() - t0
    print(f"\n{name}: {vms} VMs, concurrency {concurrency}, {total:.2f} s total, {vms / total:.1f} VMs/s")
    print(f"{'phase':10}{'wall ms':>10}{'max ms':>10}{'cmds/VM':>10}{'in tools':>10}{'driver ms':>11}")
    own_total = 0.0
    for phase in PHASES:
        wall = statistics.mean(TALLY.wall[phase]) * 1000
        cmds = TALLY.cmds[phase] / vms
        tools = TALLY.cmd_seconds[phase] / vms * 1000
        own = wall - tools
        own_total += own
        print(f"{phase:10}{wall:10.1f}{max(TALLY.wall[phase]) * 1000:10.1f}{cmds:10.1f}{tools:10.1f}{own:11.1f}")
    print(f"{'per VM':10}{sum(statistics.mean(TALLY.wall[p]) for p in PHASES) * 1000:10.1f}"
          f"{'':30}{own_total:11.1f}")
    await driver.aclose()


async def baseline(host: FakeHost, n: int = 20) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await run_command([host.tool("zfs"), "list", "-H", "-o", "name", "rpool"], timeout=30)
    return (time.perf_counter() - t0) / n * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    import logging

    logging.disable(logging.INFO)
    host = FakeHost.create()
    os.environ.update(host.env)
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    try:
        seed(host)
        host.set_runner([])  # the "guest" idles until stopped: no runner needed here
        with tempfile.TemporaryDirectory() as tmp:
            base = await baseline(host)
            print(f"one fake tool call alone (Python start-up + state file): {base:.1f} ms")
            print("'in tools' = time inside external commands; 'driver ms' = wall minus that, the driver's own cost")
            bhyve_module.run_command = timed_run_command  # charge each command to its phase
            for conc in sorted({1, args.concurrency}):
                driver = BhyveDriver(bhyve_config(host, Path(tmp) / f"bhyve{conc}"))
                await bench("bhyve driver (fake tools)", driver, args.vms, conc)
            local = LocalDriver(LocalConfig(state_dir=Path(tmp) / "local",
                                            runner_argv=(sys.executable, "-c", "import time; time.sleep(600)")))
            await bench("local driver (runner = a sleeping process)", local, args.vms, args.concurrency)
    finally:
        for pid in host.vm_pids():
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
        host.remove()


if __name__ == "__main__":
    asyncio.run(main())
