"""The local driver: a runner subprocess per job, found again after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.catalog import LocalConfig
from orchestrator.drivers.errors import BootTimeout, NameInvalid, ProvisionError, VmDied
from orchestrator.drivers.local import LocalDriver, process_start_time
from orchestrator.drivers.registry import reconcile
from tests.drivers.support import CALLIN, Gateway
from tests.waiting import async_wait_until


def alive(pid: int) -> bool:
    return process_start_time(pid) is not None


async def test_lifecycle_end_to_end(local_cfg: LocalConfig, gateway: Gateway):
    driver = LocalDriver(local_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    assert (local_cfg.state_dir / spec.name / "work").is_dir()
    await driver.boot(spec)
    await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    pid = json.loads((local_cfg.state_dir / spec.name / "pid").read_text())["pid"]
    # The token is in the runner's environment only, never in its argv.
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert spec.bootstrap.token.encode() not in b" ".join(cmdline)
    assert cmdline[-3:-1] == [b"--orchestrator", spec.bootstrap.orchestrator.encode()]
    assert os.getpgid(pid) == pid  # its own process group
    assert await driver.list_owned() == {spec.name}

    await gateway.release(spec.bootstrap.token)
    tail = await async_wait_until(lambda: _has(driver, spec.name, "job over"), what="runner output")
    assert "runner: called in" in tail
    await driver.stop(spec.name)
    await driver.destroy(spec.name)
    assert not (local_cfg.state_dir / spec.name).exists()
    assert await driver.list_owned() == set()
    await driver.destroy(spec.name)  # idempotent


async def _has(driver: LocalDriver, vm: str, text: str) -> str | None:
    tail = await driver.console_tail(vm)
    return tail if text in tail else None


async def test_runner_never_calls_in(tmp_path: Path, gateway: Gateway):
    cfg = LocalConfig(state_dir=tmp_path / "s", runner_argv=(sys.executable, str(CALLIN), "--silent"))
    driver = LocalDriver(cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    await async_wait_until(lambda: _has(driver, spec.name, "not calling in"), what="runner output")
    with pytest.raises(BootTimeout) as info:
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 0.3)
    assert "not calling in" in info.value.console_tail
    pid = json.loads((cfg.state_dir / spec.name / "pid").read_text())["pid"]
    await driver.destroy(spec.name)
    assert not alive(pid)
    assert not (cfg.state_dir / spec.name).exists()


async def test_runner_that_exits_early_is_reported(tmp_path: Path, gateway: Gateway):
    cfg = LocalConfig(state_dir=tmp_path / "s", runner_argv=(sys.executable, str(CALLIN), "--crash"))
    driver = LocalDriver(cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    with pytest.raises(VmDied, match="exited with status 3") as info:
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    assert "crashing on purpose" in info.value.console_tail
    await driver.destroy(spec.name)


async def test_orphans_are_reaped_after_a_restart(local_cfg: LocalConfig, gateway: Gateway):
    first = LocalDriver(local_cfg)
    live, orphan = gateway.spec(), gateway.spec()
    for spec in (live, orphan):
        await first.prepare(spec)
        await first.boot(spec)
        await first.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    pids = {s.name: json.loads((local_cfg.state_dir / s.name / "pid").read_text())["pid"] for s in (live, orphan)}
    await first.aclose()  # the orchestrator "restarts"; runners keep running

    second = LocalDriver(local_cfg)
    assert await second.list_owned() == {live.name, orphan.name}
    assert await reconcile(second, {live.name}) == [orphan.name]
    await async_wait_until(lambda: not alive(pids[orphan.name]), what="orphan runner killed")
    assert alive(pids[live.name])
    assert await second.list_owned() == {live.name}
    await second.destroy(live.name)
    await async_wait_until(lambda: not alive(pids[live.name]), what="live runner killed")


async def test_preparing_the_same_vm_again_kills_its_leftover_runner(local_cfg: LocalConfig, gateway: Gateway):
    spec = gateway.spec()
    crashed = LocalDriver(local_cfg)
    await crashed.prepare(spec)
    await crashed.boot(spec)
    await crashed.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    old = json.loads((local_cfg.state_dir / spec.name / "pid").read_text())["pid"]
    with pytest.raises(ProvisionError, match="in use by a live job"):
        await crashed.prepare(spec)  # in the same process it is a live job, not a leftover
    assert alive(old)
    await crashed.aclose()  # the orchestrator "died"; its runner did not
    driver = LocalDriver(local_cfg)
    await driver.prepare(spec)
    assert not alive(old)
    await driver.boot(spec)
    new = json.loads((local_cfg.state_dir / spec.name / "pid").read_text())["pid"]
    assert new != old and alive(new)
    await driver.destroy(spec.name)
    assert not alive(new)


async def test_a_recycled_pid_is_never_killed(local_cfg: LocalConfig, gateway: Gateway):
    """A pid file whose start time does not match the process is stale: no signal is sent."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        driver = LocalDriver(local_cfg)
        spec = gateway.spec()
        d = local_cfg.state_dir / spec.name
        d.mkdir(parents=True)
        (d / "pid").write_text(json.dumps({"pid": bystander.pid, "start": "1"}))
        assert await driver.list_owned() == {spec.name}
        await driver.destroy(spec.name)
        assert bystander.poll() is None, "the bystander was killed"
        assert not d.exists()
    finally:
        bystander.kill()
        bystander.wait()


async def test_a_runner_ignoring_sigterm_is_killed(tmp_path: Path, gateway: Gateway):
    script = ("import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('stubborn', flush=True); time.sleep(60)")
    cfg = LocalConfig(state_dir=tmp_path / "s", runner_argv=(sys.executable, "-c", script), stop_grace=0.3)  # type: ignore[arg-type]
    driver = LocalDriver(cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    await async_wait_until(lambda: _has(driver, spec.name, "stubborn"), what="runner started")
    pid = json.loads((cfg.state_dir / spec.name / "pid").read_text())["pid"]
    await driver.destroy(spec.name)
    assert not alive(pid)


async def test_names_are_validated(local_cfg: LocalConfig):
    driver = LocalDriver(local_cfg)
    for bad in ("../../etc", "solstice-abcdef12-1/../../x", "x; rm -rf /"):
        with pytest.raises(NameInvalid):
            await driver.destroy(bad)
    assert not local_cfg.state_dir.exists()


def test_serves_labels(tmp_path: Path):
    assert LocalDriver(LocalConfig(state_dir=tmp_path)).serves("anything")
    only = LocalDriver(LocalConfig(state_dir=tmp_path, labels=("ubuntu-22.04",)))
    assert only.serves("ubuntu-22.04") and not only.serves("illumos-stable")


async def test_cancelled_wait_leaves_runner_to_destroy(local_cfg: LocalConfig, gateway: Gateway):
    driver = LocalDriver(local_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    waiter = asyncio.create_task(driver.wait_ready(spec, asyncio.Event(), 30))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    pid = json.loads((local_cfg.state_dir / spec.name / "pid").read_text())["pid"]
    await driver.destroy(spec.name)
    assert not alive(pid)
