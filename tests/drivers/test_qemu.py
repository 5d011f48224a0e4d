"""The qemu driver's lifecycle, teardown and reconciliation, with a stand-in for QEMU
(tests/fakes/qemu/) and the real qemu-img. tests/images/test_vm.py boots real VMs."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from common.bootstrap import RunnerBootstrap, read_user_data
from orchestrator.catalog import DriverConfig, QemuConfig, QemuImage
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.check import CheckContext, Verdict, check_host
from orchestrator.drivers.errors import BootTimeout, ProvisionError, VmDied
from orchestrator.drivers.local import process_start_time
from orchestrator.drivers.qemu import QemuDriver
from orchestrator.drivers.registry import make_driver, reconcile
from orchestrator.node.node import _catalog_labels
from tests.node.harness import local_settings
from tests.waiting import async_wait_until

FAKE_QEMU = Path(__file__).parents[1] / "fakes" / "qemu" / "qemu-system-x86_64"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "debian-12.raw"
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    return path


@pytest.fixture
def config(tmp_path: Path, image: Path) -> QemuConfig:
    return QemuConfig(images={"debian-12": QemuImage(path=image, vcpus=1, ram="512M")},
                      state_dir=tmp_path / "qemu", qemu=str(FAKE_QEMU), accel="tcg",
                      stop_grace=2, poll_interval=0.05)  # type: ignore[arg-type]


@pytest.fixture
async def driver(config: QemuConfig):
    """The driver under test; whatever VM a test leaves (a failed assertion) is reaped after it."""
    d = QemuDriver(config)
    try:
        yield d
    finally:
        await d.aclose()
        reaper = QemuDriver(config)
        for vm in await reaper.list_owned():
            await reaper.destroy(vm)


def spec(job: str = "job-1", label: str = "debian-12", address: str = "127.0.0.1:50051") -> VmSpec:
    return VmSpec.for_job(job, 1, label, RunnerBootstrap(address, "eyJ.a.b"))


async def test_prepare_makes_an_overlay_and_the_brands_seed(driver: QemuDriver, config: QemuConfig, image: Path):
    s = spec()
    await driver.prepare(s)
    d = config.state_dir / s.name
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(d / "disk.qcow2")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(image)
    boot = read_user_data((d / "seed" / "user-data").read_text())
    # The guest reaches the host's loopback through QEMU's user-mode network.
    assert (boot.orchestrator, boot.token) == ("10.0.2.2:50051", "eyJ.a.b")
    assert sorted(p.name for p in (d / "seed").iterdir()) == ["meta-data", "network-config", "user-data"]
    assert (d / "cidata.iso").is_file() and (d / "serial").read_text().startswith("ds=nocloud;i=")
    await driver.destroy(s.name)
    assert not d.exists()


async def test_a_job_vm_boots_runs_and_is_torn_down(driver: QemuDriver, config: QemuConfig):
    s = spec()
    await driver.prepare(s)
    await driver.boot(s)
    d = config.state_dir / s.name
    pid = json.loads((d / "pid").read_text())["pid"]
    console = d / "console.log"
    await async_wait_until(lambda: console.exists() and "booting" in console.read_text(), what="the console")
    ready = asyncio.Event()
    ready.set()  # the runner called in
    await driver.wait_ready(s, ready, 5)
    assert await driver.list_owned() == {s.name}
    assert "fake guest solstice-" in await driver.console_tail(s.name)
    await driver.stop(s.name)
    assert process_start_time(pid) is None
    await driver.destroy(s.name)
    await driver.destroy(s.name)  # idempotent
    assert await driver.list_owned() == set() and not d.exists()


async def test_a_guest_that_powers_off_before_calling_in_dies_with_its_console(driver: QemuDriver, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "poweroff")
    s = spec()
    await driver.prepare(s)
    await driver.boot(s)
    with pytest.raises(VmDied) as info:
        await driver.wait_ready(s, asyncio.Event(), 30)
    assert "the guest powered off" in str(info.value)
    assert "the job token is not valid" in info.value.console_tail
    await driver.destroy(s.name)


async def test_qemu_failing_to_start_says_why(driver: QemuDriver, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "fail")
    s = spec()
    await driver.prepare(s)
    await driver.boot(s)
    with pytest.raises(VmDied) as info:
        await driver.wait_ready(s, asyncio.Event(), 30)
    assert "qemu exited with status 1: qemu-system-x86_64: failed to initialize kvm" in str(info.value)
    await driver.destroy(s.name)


async def test_a_runner_that_never_calls_in_times_out(driver: QemuDriver, config: QemuConfig):
    s = spec()
    await driver.prepare(s)
    await driver.boot(s)
    console = config.state_dir / s.name / "console.log"
    await async_wait_until(lambda: console.exists() and "booting" in console.read_text(), what="the console")
    with pytest.raises(BootTimeout) as info:
        await driver.wait_ready(s, asyncio.Event(), 0.5)
    assert "booting" in info.value.console_tail
    await driver.destroy(s.name)


async def test_prepare_failures_leave_nothing(driver: QemuDriver, config: QemuConfig, image: Path):
    with pytest.raises(ProvisionError, match="no qemu image serves runs_on label 'nope'"):
        await driver.prepare(spec(label="nope"))
    image.unlink()
    with pytest.raises(ProvisionError, match="does not exist"):
        await driver.prepare(spec())
    assert await driver.list_owned() == set()


async def test_a_restarted_orchestrator_reaps_what_no_job_claims(driver: QemuDriver, config: QemuConfig):
    first = driver
    live, orphan = spec("job-live"), spec("job-orphan")
    for s in (live, orphan):
        await first.prepare(s)
        await first.boot(s)
    pids = {s.name: json.loads((config.state_dir / s.name / "pid").read_text())["pid"] for s in (live, orphan)}
    await first.aclose()  # the orchestrator goes away; its VMs keep running
    second = QemuDriver(config)
    assert await second.list_owned() == {live.name, orphan.name}
    assert await reconcile(second, {live.name}) == [orphan.name]
    assert process_start_time(pids[orphan.name]) is None and process_start_time(pids[live.name]) is not None
    await second.destroy(live.name)
    assert process_start_time(pids[live.name]) is None


async def test_a_recycled_pid_is_never_signalled(driver: QemuDriver, config: QemuConfig):
    s = spec()
    await driver.prepare(s)
    d = config.state_dir / s.name
    # A pid file naming this very test process, with another start time: a recycled pid.
    (d / "pid").write_text(json.dumps({"pid": os.getpid(), "start": "1"}))
    await QemuDriver(config).destroy(s.name)  # must not kill us
    assert not d.exists()


def test_the_registry_builds_it(config: QemuConfig):
    driver = make_driver(DriverConfig(driver="qemu", qemu=config))
    assert isinstance(driver, QemuDriver) and driver.serves("debian-12") and not driver.serves("other")


async def test_the_host_check_lists_what_the_qemu_driver_needs(config: QemuConfig, image: Path):
    results = {r.what: r for r in await check_host(CheckContext(DriverConfig(driver="qemu", qemu=config)))}
    assert results[f"tool {FAKE_QEMU}"].ok and results["tool qemu-img"].ok
    accel = results["accelerator"]
    assert accel.ok and accel.verdict is Verdict.WARN and "tcg" in accel.detail and "minutes" in accel.detail
    assert results[f"image debian-12: {image}"].ok
    image.unlink()
    results = {r.what: r for r in await check_host(CheckContext(DriverConfig(driver="qemu", qemu=config)))}
    assert not results[f"image debian-12: {image}"].ok
    assert "solstice-image build makes it" in results[f"image debian-12: {image}"].fix


def test_a_qemu_node_serves_its_images_labels(config: QemuConfig, tmp_path: Path):
    settings = local_settings(tmp_path, labels=(), drivers=DriverConfig(driver="qemu", qemu=config))
    assert _catalog_labels(settings) == ("debian-12",)
