"""The bhyve driver against the strict fake: console capture, boot diagnosis, stopping races, locale."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from orchestrator.catalog import BhyveConfig, ImageEntry
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.errors import BootFailed, BootTimeout, CommandFailed, ProvisionError, VmDied
from tests.drivers.support import CALLIN, IMAGE, SNAPSHOT, Gateway, bhyve_config
from tests.fakes.illumos.host import FakeHost
from tests.waiting import async_wait_until

NOTHING = {"zones": [], "links": [], "datasets": []}
pytestmark = pytest.mark.timeout(120)


def zone_state(host: FakeHost, vm: str) -> str | None:
    zone = host.state()["zones"].get(vm)
    return zone["state"] if zone else None


def console_log(cfg: BhyveConfig, vm: str) -> str:
    path = cfg.state_dir / vm / "console.log"
    return path.read_text(errors="replace") if path.exists() else ""


async def booted(driver: BhyveDriver, gateway: Gateway, **spec_args: object):  # type: ignore[no-untyped-def]
    spec = gateway.spec(**spec_args)  # type: ignore[arg-type]
    await driver.prepare(spec)
    await driver.boot(spec)
    return spec


async def test_the_console_is_captured_without_wait_and_followed_across_a_guest_reboot(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway
):
    """The bug that broke every job: with ``,wait`` bhyve died at device init. Now the zone stays
    up, the capture connects by itself and re-attaches when bhyve binds the socket anew."""
    fake_host.set_runner([sys.executable, str(CALLIN), "--tick"])
    driver = BhyveDriver(bhyve_cfg)
    spec = await booted(driver, gateway)
    vm = spec.name
    await async_wait_until(lambda: "runner: tick" in console_log(bhyve_cfg, vm), what="the capture")
    assert zone_state(fake_host, vm) == "running"
    fake_host.guest_reboot(vm)
    await async_wait_until(lambda: "re-attached" in console_log(bhyve_cfg, vm), what="the capture to re-attach")
    after = console_log(bhyve_cfg, vm).split("re-attached", 1)[1]
    await async_wait_until(lambda: "runner: tick" in console_log(bhyve_cfg, vm).split("re-attached", 1)[1],
                           what="output after the reboot")
    assert "Unable to initialize backend" not in (await driver.console_tail(vm)) and after is not None
    await driver.destroy(vm)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_a_restarted_orchestrator_captures_the_console_of_running_vms_again(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway
):
    fake_host.set_runner([sys.executable, str(CALLIN), "--tick"])
    first = BhyveDriver(bhyve_cfg)
    spec = await booted(first, gateway)
    await async_wait_until(lambda: "runner: tick" in console_log(bhyve_cfg, spec.name), what="the capture")
    await first.aclose()  # the process "restarts": its capture is gone, the VM runs on
    size = len(console_log(bhyve_cfg, spec.name))
    second = BhyveDriver(bhyve_cfg)
    assert spec.name in await second.list_owned()  # what reconciliation calls at start-up
    await async_wait_until(lambda: "tick" in console_log(bhyve_cfg, spec.name)[size:], what="the new capture")
    await second.destroy(spec.name)
    await second.aclose()


async def test_user_data_gone_before_boot_fails_with_that_reason(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway
):
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    (bhyve_cfg.state_dir / spec.name / "user-data").unlink()
    fake_host.clear_calls()
    with pytest.raises(ProvisionError, match=r"user-data .* is missing \(the brand would boot the guest with "
                                             "user-data of its own"):
        await driver.boot(spec)
    assert ["zoneadm", "-z", spec.name, "boot"] not in fake_host.calls()
    assert fake_host.owned() == NOTHING
    await driver.aclose()


@pytest.mark.parametrize(("mode", "error", "reason"), [
    ("off", BootTimeout, "never applied our user-data"),
    ("ignores-seed", BootFailed, "cloud-init finished without running our user-data"),
])
async def test_a_guest_that_ignores_our_user_data_fails_saying_so(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway, mode: str, error: type, reason: str
):
    fake_host.set_guest_cloud_init(mode)
    driver = BhyveDriver(bhyve_cfg)
    spec = await booted(driver, gateway)
    with pytest.raises(error, match=reason):
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 3)
    await driver.destroy(spec.name)
    await driver.aclose()


async def test_a_runner_that_never_calls_in_after_our_user_data_ran(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway
):
    fake_host.set_runner([sys.executable, str(CALLIN), "--silent"])
    driver = BhyveDriver(bhyve_cfg)
    spec = await booted(driver, gateway)
    await async_wait_until(lambda: "not calling in" in console_log(bhyve_cfg, spec.name), what="the runner")
    with pytest.raises(BootTimeout, match=f"applied our user-data, but the runner never reached "
                                          f"{spec.bootstrap.orchestrator}"):
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 0.5)
    assert f"solstice-ci: user-data of {spec.name} applied" in console_log(bhyve_cfg, spec.name)
    await driver.destroy(spec.name)
    await driver.aclose()


async def test_an_overcommitted_host_fails_the_boot_at_once(fake_host: FakeHost, tmp_path: Path, gateway: Gateway):
    fake_host.set_memory(3 * 1024)
    image = ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, ram="2G", link="igb0", memreserve=True)
    cfg = bhyve_config(fake_host, tmp_path / "s", **{"illumos-stable": image})
    driver = BhyveDriver(cfg)
    first = await booted(driver, gateway)
    await driver.wait_ready(first, gateway.event(first.bootstrap.token), 30)
    second = await booted(driver, gateway)
    attrs = {a["name"]: a["value"] for a in fake_host.state()["zones"][second.name]["config"]["attrs"]}
    assert attrs["memreserve"] == "on"
    with pytest.raises(BootFailed, match="host out of memory for 2 GiB"):
        await driver.wait_ready(second, gateway.event(second.bootstrap.token), 60)
    for spec in (first, second):
        await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_a_powered_off_guest_is_not_gone_while_the_zone_shuts_down(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway
):
    """``list -p`` prints nothing during the shutdown: the driver waits for the zone's real state."""
    import subprocess

    fake_host.set_shutdown_hold(1.5)
    fake_host.set_runner([sys.executable, str(CALLIN), "--silent"])
    driver = BhyveDriver(bhyve_cfg)
    spec = await booted(driver, gateway)
    subprocess.run([bhyve_cfg.bhyvectl, f"--vm={spec.name}", "--force-poweroff"], check=True)
    with pytest.raises(VmDied, match="zone is installed"):
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


@pytest.mark.parametrize("halt_lost_the_race", [True, False])
async def test_a_failed_halt_is_fine_only_when_the_zone_halted_anyway(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway, halt_lost_the_race: bool
):
    """bhyvectl cannot reach the VM, so stop falls back to halt, which fails: because the zone's own
    halt won the race (fine: the zone is installed), or for real (the zone still runs: raised)."""
    driver = BhyveDriver(bhyve_cfg)
    spec = await booted(driver, gateway)
    halt = {"tool": "zoneadm", "sub": "halt", "nth": 1, "exit": 1, "stderr": "zoneadm: zone 'x': halt failed"}
    if halt_lost_the_race:
        halt["state"] = "installed"
    fake_host.set_faults([{"tool": "bhyvectl", "sub": "poweroff", "exit": 1, "stderr": "vm_open failed"}, halt])
    if halt_lost_the_race:
        await driver.stop(spec.name)
        assert zone_state(fake_host, spec.name) == "installed"
    else:
        with pytest.raises(CommandFailed, match="halt failed"):
            await driver.stop(spec.name)
        assert zone_state(fake_host, spec.name) == "running"
    fake_host.set_faults([])
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_the_tools_run_in_the_c_locale(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
):
    """An operator's de_DE locale would translate "No such zone configured": teardown must still see "gone"."""
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("LC_MESSAGES", "de_DE.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    await driver.destroy(spec.name)  # nothing exists: every step meets a (translated, for others) "gone"
    await driver.prepare(spec)
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


@pytest.mark.parametrize(("image", "rom"), [
    (ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, link="igb0"), "BHYVE_RELEASE"),
    (ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, link="igb0", firmware="bios"), "BHYVE_RELEASE_CSM"),
    (ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, link="igb0", bootrom="BHYVE_DEBUG"), "BHYVE_DEBUG"),
])
async def test_the_boot_rom_comes_from_the_image(fake_host: FakeHost, tmp_path: Path, gateway: Gateway,
                                                 image: ImageEntry, rom: str):
    driver = BhyveDriver(bhyve_config(fake_host, tmp_path / "s", **{"illumos-stable": image}))
    spec = gateway.spec()
    await driver.prepare(spec)
    attrs = {a["name"]: a["value"] for a in fake_host.state()["zones"][spec.name]["config"]["attrs"]}
    assert attrs["bootrom"] == rom
    if rom == "BHYVE_DEBUG":  # not delivered on this host: the brand's boot hook refuses it
        with pytest.raises(ProvisionError, match="call to zoneadmd failed") as info:
            await driver.boot(spec)
        assert "bootrom BHYVE_DEBUG not found." in info.value.console_tail
    else:
        await driver.boot(spec)
        await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_a_disk_size_below_the_images_is_refused_before_anything_is_made(
    fake_host: FakeHost, tmp_path: Path, gateway: Gateway
):
    image = ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, link="igb0", disk_size="5G")  # the image is 10 GiB
    driver = BhyveDriver(bhyve_config(fake_host, tmp_path / "s", **{"illumos-stable": image}))
    for _ in range(2):  # asked once per image
        with pytest.raises(ProvisionError, match=r"disk_size 5G is smaller than the image's volsize \(10 GiB\)"):
            await driver.prepare(gateway.spec())
    assert [c[:2] for c in fake_host.calls()] == [["zfs", "get"]]
    grown = dataclasses.replace(image, disk_size="10G")
    assert await BhyveDriver(bhyve_config(fake_host, tmp_path / "s", **{"illumos-stable": grown}))._image_problem(
        "illumos-stable", grown) is None
    await driver.aclose()
