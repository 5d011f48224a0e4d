"""The bhyve driver against the fake illumos toolchain."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from orchestrator.catalog import BhyveConfig
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.errors import BootTimeout, ProvisionError, VmDied
from orchestrator.drivers.registry import reconcile
from orchestrator.names import vnic_name
from tests.drivers.support import CALLIN, IMAGE, SNAPSHOT, Gateway
from tests.fakes.illumos.host import FakeHost
from tests.waiting import async_wait_until

NOTHING = {"zones": [], "links": [], "datasets": []}


def zone_state(host: FakeHost, vm: str) -> str | None:
    zone = host.state()["zones"].get(vm)
    return zone["state"] if zone else None


async def test_happy_path_runs_exactly_these_commands(fake_host: FakeHost, pool_cfg: BhyveConfig, gateway: Gateway,
                                                     lease_store):
    driver = BhyveDriver(pool_cfg)
    driver.attach_store(lease_store, "host-a")
    spec = gateway.spec()
    vm, vnic, disk = spec.name, vnic_name(spec.name), f"rpool/solstice/vms/{spec.name}"
    cfgfile = str(pool_cfg.state_dir / vm / "zonecfg")

    await driver.prepare(spec)
    await driver.boot(spec)
    await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)

    calls = fake_host.calls()
    assert calls[:7] == [
        ["zfs", "get", "-Hp", "-o", "value", "volsize", f"{IMAGE}@{SNAPSHOT}"],  # disk_size >= the image's
        ["zfs", "clone", f"{IMAGE}@{SNAPSHOT}", disk],
        ["zfs", "set", "volsize=20G", disk],
        ["dladm", "create-vnic", "-t", "-l", "igb0", vnic],
        ["zonecfg", "-z", vm, "-f", cfgfile],
        ["zoneadm", "-z", vm, "install"],
        ["zoneadm", "-z", vm, "boot"],
    ]
    # Waiting only ever polls the zone's state (read-only).
    assert all(c == ["zoneadm", "-z", vm, "list", "-p"] for c in calls[7:])

    zone = fake_host.state()["zones"][vm]
    assert zone["state"] == "running"
    cfg = zone["config"]
    assert (cfg["brand"], cfg["ip-type"], cfg["autoboot"]) == ("bhyve", "exclusive", "false")
    assert cfg["zonepath"] == f"/solstice/zones/{vm}"
    assert [(n["physical"], n["allowed-address"], n["defrouter"]) for n in cfg["nets"]] == [
        (vnic, "10.9.0.10/24", "10.9.0.1")]
    assert [d["match"] for d in cfg["devices"]] == [f"/dev/zvol/rdsk/{disk}"]
    attrs = {a["name"]: a["value"] for a in cfg["attrs"]}
    assert attrs == {
        "bootdisk": disk, "ram": "2G", "vcpus": "2", "console": "socket,/tmp/vm.com1", "bootrom": "BHYVE_RELEASE",
        "cloud-init": str(pool_cfg.state_dir / vm / "user-data"), "resolvers": "10.9.0.1",
    }
    assert (pool_cfg.state_dir / vm / "user-data").stat().st_mode & 0o077 == 0
    assert fake_host.fs(f"/dev/zvol/rdsk/{disk}").exists()
    ds = fake_host.state()["datasets"]
    assert ds[disk]["origin"] == f"{IMAGE}@{SNAPSHOT}" and ds[disk]["volsize"] == 20 * 2**30
    assert ds[disk]["in_use"]
    assert [(lease.address, lease.vm_name) for lease in await lease_store.address_leases()] == [("10.9.0.10", vm)]

    fake_host.clear_calls()
    await driver.stop(vm)
    await driver.destroy(vm)
    listp = ["zoneadm", "-z", vm, "list", "-p"]
    calls = fake_host.calls()
    assert [c for c in calls if c != listp] == [
        ["bhyvectl", f"--vm={vm}", "--force-poweroff"],  # zoneadmd halts the zone by itself
        ["zoneadm", "-z", vm, "uninstall", "-F"],
        ["zonecfg", "-z", vm, "delete", "-F"],
        ["dladm", "delete-vnic", vnic],
        ["zfs", "destroy", "-r", f"rpool/solstice/zones/{vm}"],
        ["zfs", "destroy", disk],
    ]
    assert fake_host.owned() == NOTHING
    assert not (pool_cfg.state_dir / vm).exists()
    assert not fake_host.fs(f"/dev/zvol/rdsk/{disk}").exists()
    assert await lease_store.address_leases() == []
    # The golden image is untouched.
    assert f"{IMAGE}@{SNAPSHOT}" in fake_host.state()["datasets"]
    await driver.aclose()


async def test_end_to_end_job_through_the_fake_bhyve(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    """The runner boots from the NoCloud seed, calls in, runs, and the guest powers off."""
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    seed = fake_host.fs(f"/solstice/zones/{spec.name}/root/cloud-init")
    assert (seed / "meta-data").read_text().splitlines()[1] == f"local-hostname: {spec.name}"
    assert spec.bootstrap.token in (seed / "user-data").read_text()

    await gateway.release(spec.bootstrap.token)
    await async_wait_until(lambda: zone_state(fake_host, spec.name) == "installed", what="guest poweroff")
    tail = await async_wait_until(lambda: _tail_has(driver, spec.name, "Power down"), what="console tail")
    assert "runner: called in" in tail and "Power down" in tail
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def _tail_has(driver: BhyveDriver, vm: str, text: str) -> str | None:
    tail = await driver.console_tail(vm)
    return tail if text in tail else None


@pytest.mark.parametrize(
    ("tool", "sub", "extra"),
    [
        ("zfs", "clone", {}),
        ("zfs", "set", {}),
        ("dladm", "create-vnic", {}),
        ("zonecfg", "script", {}),
        ("zoneadm", "install", {"state": "incomplete"}),  # a failed install leaves the zone incomplete
        ("zoneadm", "boot", {}),
    ],
)
async def test_failure_at_each_step_leaves_nothing_behind(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway, tool: str, sub: str, extra: dict
):
    fake_host.set_faults([{"tool": tool, "sub": sub, "nth": 1, "exit": 1,
                           "stderr": f"{tool}: injected failure", **extra}])
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    with pytest.raises(ProvisionError, match="injected failure"):
        await driver.prepare(spec)
        await driver.boot(spec)
    word = "-f" if sub == "script" else sub
    assert any(c[0] == tool and word in c for c in fake_host.calls())
    assert fake_host.owned() == NOTHING
    assert not (bhyve_cfg.state_dir / spec.name).exists()
    await driver.aclose()


async def test_zvol_node_that_never_appears(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    fake_host.set_faults([{"tool": "zfs", "sub": "clone", "nth": 1, "zvol_node": False}])
    driver = BhyveDriver(dataclasses.replace(bhyve_cfg, zvol_timeout=0.3))
    spec = gateway.spec()
    with pytest.raises(ProvisionError, match=f"/dev/zvol/rdsk/rpool/solstice/vms/{spec.name} did not appear"):
        await driver.prepare(spec)
    assert not any(c[0] in ("zonecfg", "zoneadm") and c[-1] != "-p" for c in fake_host.calls())
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_runner_never_calls_in(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    import sys

    fake_host.set_runner([sys.executable, str(CALLIN), "--silent"])
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    await async_wait_until(lambda: _tail_has(driver, spec.name, "not calling in"), what="console output")
    with pytest.raises(BootTimeout) as info:
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 0.5)
    assert "runner: not calling in" in info.value.console_tail
    assert "did not call in within 0.5s" in str(info.value)
    await driver.destroy(spec.name)  # the scheduler's finally
    assert fake_host.owned() == NOTHING
    assert fake_host.vm_pids() == []
    await driver.aclose()


async def test_vm_that_dies_before_calling_in(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    import sys

    fake_host.set_runner([sys.executable, str(CALLIN), "--crash"])
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    with pytest.raises(VmDied, match="zone is installed") as info:
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    assert "crashing on purpose" in info.value.console_tail
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_missing_image_label_runs_no_command(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    driver = BhyveDriver(bhyve_cfg)
    assert not driver.serves("ubuntu-22.04") and driver.serves("illumos-stable")
    with pytest.raises(ProvisionError, match="no bhyve image serves"):
        await driver.prepare(gateway.spec(label="ubuntu-22.04"))
    assert fake_host.calls() == []


async def test_eight_jobs_provisioned_concurrently(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    driver = BhyveDriver(bhyve_cfg)
    specs = [gateway.spec() for _ in range(8)]

    async def up(spec):
        await driver.prepare(spec)
        await driver.boot(spec)
        await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 60)

    await asyncio.gather(*(up(s) for s in specs))
    state = fake_host.state()
    running = {n for n, z in state["zones"].items() if z["state"] == "running"}
    assert running == {s.name for s in specs}
    assert len({z["zoneid"] for z in state["zones"].values()}) == 8
    assert {link["zone"] for n, link in state["links"].items() if n.startswith("solstice")} == running
    assert await driver.list_owned() == running

    # Teardown of all eight, while reconciliation (no live jobs) races it.
    results = await asyncio.gather(
        *(driver.destroy(s.name) for s in specs), reconcile(BhyveDriver(bhyve_cfg), set()),
    )
    assert set(results[-1]) <= running
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_destroy_is_idempotent_and_concurrent_safe(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    spec = gateway.spec()
    driver = BhyveDriver(bhyve_cfg)
    await driver.prepare(spec)
    await driver.boot(spec)
    other = BhyveDriver(bhyve_cfg)  # e.g. a second process; no shared locks
    await asyncio.gather(driver.destroy(spec.name), other.destroy(spec.name), driver.destroy(spec.name))
    assert fake_host.owned() == NOTHING
    await driver.destroy(spec.name)  # and once more, with nothing left
    await driver.stop(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()
    await other.aclose()


@pytest.mark.parametrize("left", ["everything", "only the clone"])
async def test_provisioning_the_same_vm_again_removes_its_leftovers_first(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway, left: str
):
    """An orchestrator died provisioning this attempt; the redelivered claim provisions it again."""
    import subprocess

    spec = gateway.spec()
    if left == "everything":
        crashed = BhyveDriver(bhyve_cfg)
        await crashed.prepare(spec)
        await crashed.boot(spec)
        await crashed.aclose()  # no teardown: the process "died"
    else:
        subprocess.run([bhyve_cfg.zfs, "clone", f"{IMAGE}@{SNAPSHOT}", f"rpool/solstice/vms/{spec.name}"],
                       check=True)
    fake_host.clear_calls()
    driver = BhyveDriver(bhyve_cfg)
    await driver.prepare(spec)
    await driver.boot(spec)
    await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)
    calls = fake_host.calls()
    clones = [c for c in calls if c[:2] == ["zfs", "clone"]]
    assert len(clones) == 2, "the first clone hit the leftover, the second made the VM"
    assert ["zfs", "destroy", f"rpool/solstice/vms/{spec.name}"] in calls
    assert zone_state(fake_host, spec.name) == "running"
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_a_name_live_in_this_process_is_refused_not_torn_down(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway
):
    """Two live jobs whose ids hash alike: the second is refused, the first keeps its VM."""
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    await driver.boot(spec)
    fake_host.clear_calls()
    with pytest.raises(ProvisionError, match="in use by a live job"):
        await driver.prepare(spec)
    assert fake_host.calls() == []
    assert zone_state(fake_host, spec.name) == "running"
    await driver.destroy(spec.name)
    await driver.prepare(spec)  # once destroyed, the name is free again
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_reconcile_destroys_orphans_but_not_live_or_foreign(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway, tmp_path: Path
):
    import subprocess

    driver = BhyveDriver(bhyve_cfg)
    live, orphan, half = gateway.spec(), gateway.spec(), gateway.spec()
    for spec in (live, orphan):
        await driver.prepare(spec)
        await driver.boot(spec)
    # A half-made VM: only its VNIC and disk exist (a crash between steps).
    env_tools = dict(zfs=bhyve_cfg.zfs, dladm=bhyve_cfg.dladm, zonecfg=bhyve_cfg.zonecfg)
    subprocess.run([env_tools["zfs"], "clone", f"{IMAGE}@{SNAPSHOT}", f"rpool/solstice/vms/{half.name}"], check=True)
    subprocess.run([env_tools["dladm"], "create-vnic", "-l", "igb0", vnic_name(half.name)], check=True)
    # Things that are not ours: a zone, a VNIC, a clone without the prefix.
    subprocess.run([env_tools["zonecfg"], "-z", "build-01", "create -b; set zonepath=/zones/build-01"], check=True)
    subprocess.run([env_tools["dladm"], "create-vnic", "-l", "igb0", "build0"], check=True)
    subprocess.run([env_tools["zfs"], "clone", f"{IMAGE}@{SNAPSHOT}", "rpool/solstice/vms/build-01"], check=True)

    assert await driver.list_owned() == {live.name, orphan.name, half.name}
    reaped = await reconcile(driver, {live.name})
    assert sorted(reaped) == sorted([orphan.name, half.name])
    owned = fake_host.owned()
    assert owned["zones"] == [live.name]
    assert owned["links"] == [vnic_name(live.name)]
    state = fake_host.state()
    assert "build-01" in state["zones"] and "build0" in state["links"]
    assert "rpool/solstice/vms/build-01" in state["datasets"]
    await driver.destroy(live.name)
    await driver.aclose()
