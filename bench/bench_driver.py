"""VM driver overhead per phase: the driver's own cost with zero-latency fake tools.

Run: .venv/bin/python bench/bench_driver.py [--vms N] [--concurrency N]

For the bhyve driver the illumos tools are the fakes of tests/fakes/illumos
(they answer at once; what is measured is the driver plus one process spawn
per command), and for the local driver the "runner" is a process that waits
to be killed. Each VM goes through prepare -> boot -> stop -> destroy; the
table shows, per phase, the mean and worst wall time per VM, the commands run
and the time per command. A baseline line times spawning the fake ``zfs list``
alone, so "ms/command" over the baseline is the driver's own share.
Not part of the test suite; prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
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
from orchestrator.drivers.base import VmSpec  # noqa: E402
from orchestrator.drivers.bhyve import BhyveDriver  # noqa: E402
from orchestrator.drivers.local import LocalDriver  # noqa: E402
from tests.drivers.support import bhyve_config, seed  # noqa: E402
from tests.fakes.illumos.host import FakeHost  # noqa: E402

PHASES = ("prepare", "boot", "stop", "destroy")


def spec() -> VmSpec:
    return VmSpec.for_job(str(uuid.uuid4()), 1, "illumos-stable", RunnerBootstrap("127.0.0.1:9", "tok"))


async def lifecycle(driver, host: FakeHost | None, times: dict, counts: dict, sem: asyncio.Semaphore) -> None:
    s = spec()
    async with sem:
        for phase in PHASES:
            before = len(host.calls()) if host and sem._value == 0 and False else None  # noqa: SLF001
            t0 = time.perf_counter()
            if phase in ("prepare", "boot"):
                await getattr(driver, phase)(s)
            else:
                await getattr(driver, phase)(s.name)
            times[phase].append(time.perf_counter() - t0)
            del before


async def bench(name: str, driver, host: FakeHost | None, vms: int, concurrency: int) -> None:
    times: dict[str, list[float]] = defaultdict(list)
    sem = asyncio.Semaphore(concurrency)
    if host:
        host.clear_calls()
    t0 = time.perf_counter()
    await asyncio.gather(*(lifecycle(driver, host, times, {}, sem) for _ in range(vms)))
    total = time.perf_counter() - t0
    per_phase_cmds = commands_per_phase(host) if host else {}
    print(f"\n{name}: {vms} VMs, concurrency {concurrency}, {total:.2f}s total, {vms / total:.1f} VMs/s")
    print(f"{'phase':10}{'mean ms':>10}{'max ms':>10}{'cmds/VM':>10}{'ms/cmd':>10}")
    for phase in PHASES:
        t = times[phase]
        mean = statistics.mean(t) * 1000
        cmds = per_phase_cmds.get(phase, 0) / vms if host else 0
        per_cmd = f"{mean / cmds:10.1f}" if cmds else f"{'-':>10}"
        print(f"{phase:10}{mean:10.1f}{max(t) * 1000:10.1f}{cmds:10.1f}{per_cmd}")
    if host:
        await driver.aclose()


def commands_per_phase(host: FakeHost) -> dict[str, int]:
    """Attribute each fake tool call to the phase that issues it (by the command itself)."""
    out: dict[str, int] = defaultdict(int)
    boot_seen: set[str] = set()
    for argv in host.calls():
        tool, rest = argv[0], argv[1:]
        if tool == "zfs" and rest[0] in ("clone", "set") or tool == "dladm" and rest[0] == "create-vnic" \
                or tool == "zonecfg" and "-f" in rest or tool == "zoneadm" and rest[-1] == "install":
            out["prepare"] += 1
        elif tool == "zoneadm" and rest[-1] == "boot":
            out["boot"] += 1
        elif tool == "bhyvectl" or tool == "zoneadm" and rest[-1] == "halt":
            out["stop"] += 1
        elif tool == "zoneadm" and rest[-2:] == ["list", "-p"]:
            zone = rest[1]
            # the first state read of a VM belongs to stop, the rest to destroy
            out["stop" if zone not in boot_seen else "destroy"] += 1
            boot_seen.add(zone)
        else:
            out["destroy"] += 1
    return out


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
            print(f"baseline: one fake tool call (process spawn + state file) = {base:.1f} ms")
            for conc in sorted({1, args.concurrency}):
                driver = BhyveDriver(bhyve_config(host, Path(tmp) / f"bhyve{conc}"))
                await bench("bhyve driver (fake tools)", driver, host, args.vms, conc)
            local = LocalDriver(LocalConfig(state_dir=Path(tmp) / "local",
                                            runner_argv=(sys.executable, "-c", "import time; time.sleep(600)")))
            await bench("local driver", local, None, args.vms, args.concurrency)
            print(f"\nratio bhyve prepare / baseline command: "
                  f"{'see ms/cmd column'}; local has no external commands besides the runner")
    finally:
        for pid in host.vm_pids():
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
        host.remove()


if __name__ == "__main__":
    asyncio.run(main())
