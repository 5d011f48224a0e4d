"""The driver contract's fixture: every clause runs once per driver (as tests/store/ runs per back-end).

A ``Kit`` is one driver under test plus what the clauses need to drive it:
fresh instances over the same host state (as a restarted orchestrator
makes them), a spec it serves whose runner can call in, a way to make one
spec's provisioning fail, and a look at the host to tell whether a VM still
runs. Kinds: ``local`` (runner subprocesses), ``bhyve`` (the fake illumos
host, tests/fakes/illumos), ``qemu`` (the stand-in QEMU of tests/fakes/qemu
and the real qemu-img), ``instant`` (orchestrator/node/testing.py) and
``router`` (the single node's ``LabelRouter`` sending the spec's label to a
local child, instant being its default).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.catalog import BhyveConfig, LocalConfig, QemuConfig, QemuImage
from orchestrator.drivers.base import Driver, VmSpec
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.cgroups import CgroupError, Cgroups, Limits
from orchestrator.drivers.local import LocalDriver
from orchestrator.drivers.process import live_pid
from orchestrator.drivers.qemu import QemuDriver
from orchestrator.node.testing import InstantDriver
from orchestrator.singlenode.routing import LabelRouter
from tests.drivers.support import Gateway
from tests.fakes.illumos.host import FakeHost

KINDS = ["local", "bhyve", "qemu", "instant", "router"]
FAKE_QEMU = Path(__file__).parents[2] / "fakes" / "qemu" / "qemu-system-x86_64"


@dataclass
class Kit:
    """One driver under the contract (see the module docstring)."""

    kind: str
    label: str
    gateway: Gateway
    make: Callable[[], Driver]  # a fresh instance over the same host state
    broken: Callable[[VmSpec], Driver]  # an instance whose prepare or boot of this spec fails
    # The VM's guest (or runner) still runs, as the host sees it; None: nothing of a VM runs
    # outside the driver's process (instant: a journal line and an in-process task).
    running: Callable[[str], bool] | None
    calls_in: bool = True  # its runner calls in to the gateway (else nothing ever does)
    made: list[Driver] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # every VM name a spec of this test got

    def driver(self) -> Driver:
        """A new instance, closed and reaped after the test."""
        d = self.make()
        self.made.append(d)
        return d

    def spec(self) -> VmSpec:
        s = self.gateway.spec(self.label)
        self.names.add(s.name)
        return s

    def assert_running(self, vm: str, expected: bool = True) -> None:
        if self.running is not None:
            assert self.running(vm) is expected, f"{vm} should {'' if expected else 'not '}be running"

    async def up(self, driver: Driver, spec: VmSpec) -> None:
        """prepare -> boot -> wait_ready, as the scheduler runs them."""
        await driver.prepare(spec)
        await driver.boot(spec)
        ready = self.gateway.event(spec.bootstrap.token)
        if not self.calls_in:
            ready = asyncio.Event()
            ready.set()
        await driver.wait_ready(spec, ready, 30)


class _LimitsRefused:
    """The host's cgroups, except that writing a job's limits fails once its group exists."""

    def __init__(self, real: Cgroups) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def create(self, vm: str, limits: Limits) -> None:
        self._real.create(vm, limits)
        raise CgroupError(f"cannot write the limits of {vm}: No space left on device")


def _local(cfg: LocalConfig, gateway: Gateway) -> Kit:
    def broken(spec: VmSpec) -> Driver:
        d = LocalDriver(cfg)
        if d.contain.cgroups is not None:
            # Contained (root on Linux): prepare fails once the work directory and the cgroup exist.
            d.contain = dataclasses.replace(d.contain, cgroups=_LimitsRefused(d.contain.cgroups))  # type: ignore[arg-type]
            return d
        # Plain processes: the runner cannot start, so boot fails after prepare made the work directory.
        return LocalDriver(dataclasses.replace(cfg, runner_argv=(str(cfg.state_dir.parent / "no-such-runner"),)))

    return Kit("local", "illumos-stable", gateway, lambda: LocalDriver(cfg), broken,
               lambda vm: live_pid(None, cfg.state_dir / vm) is not None)


def _bhyve(host: FakeHost, cfg: BhyveConfig, gateway: Gateway) -> Kit:
    def broken(spec: VmSpec) -> Driver:
        # zoneadm install fails after the clone, the VNIC and the zone's configuration exist.
        host.set_faults([{"tool": "zoneadm", "sub": "install", "exit": 1,
                          "stderr": "zoneadm: zone 'x': install failed: no space left on device"}])
        return BhyveDriver(cfg)

    def running(vm: str) -> bool:
        zone = host.state()["zones"].get(vm)
        return zone is not None and zone["state"] == "running"

    return Kit("bhyve", "illumos-stable", gateway, lambda: BhyveDriver(cfg), broken, running, calls_in=False)


def _qemu(cfg: QemuConfig, gateway: Gateway) -> Kit:
    def broken(spec: VmSpec) -> Driver:
        # The image is gone: prepare has made the VM's directory when it finds out.
        image = cfg.images["debian-12"]
        return QemuDriver(dataclasses.replace(cfg, images={
            "debian-12": dataclasses.replace(image, path=image.path.with_name("gone.raw"))}))

    return Kit("qemu", "debian-12", gateway, lambda: QemuDriver(cfg), broken,
               lambda vm: live_pid(None, cfg.state_dir / vm) is not None, calls_in=False)


def _instant(state_dir: Path, gateway: Gateway) -> Kit:
    silent: set[str] = set()

    def make() -> InstantDriver:
        d = InstantDriver(state_dir)
        d.silent = silent  # its fake runner speaks gRPC, which the gateway does not: nothing calls in
        return d

    def broken(spec: VmSpec) -> Driver:
        d = make()
        d.fail_prepare.add(spec.job_id)
        return d

    kit = Kit("instant", "illumos-stable", gateway, make, broken, None, calls_in=False)
    real_spec = kit.spec

    def spec() -> VmSpec:
        s = real_spec()
        silent.add(s.job_id)
        return s

    kit.spec = spec  # type: ignore[method-assign]
    return kit


def _router(local: Kit, instant_dir: Path) -> Kit:
    """The label goes to the local child; instant (the default) serves every other label."""
    def make() -> LabelRouter:
        return LabelRouter(InstantDriver(instant_dir), {local.label: local.make()})

    def broken(spec: VmSpec) -> Driver:
        return LabelRouter(InstantDriver(instant_dir), {local.label: local.broken(spec)})

    return Kit("router", local.label, local.gateway, make, broken, local.running)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[PASSED] = report.passed
    return report


PASSED = pytest.StashKey[bool]()


@pytest.fixture(params=KINDS)
async def kit(request: pytest.FixtureRequest, gateway: Gateway, tmp_path: Path) -> AsyncIterator[Kit]:
    kind = request.param
    if kind == "local":
        made = _local(request.getfixturevalue("local_cfg"), gateway)
    elif kind == "bhyve":
        made = _bhyve(request.getfixturevalue("fake_host"), request.getfixturevalue("bhyve_cfg"), gateway)
    elif kind == "qemu":
        image = tmp_path / "debian-12.raw"
        with open(image, "wb") as f:
            f.truncate(64 << 20)
        cfg = QemuConfig(images={"debian-12": QemuImage(path=image, vcpus=1, ram="512M")},
                         state_dir=tmp_path / "qemu", qemu=str(FAKE_QEMU), accel="tcg",
                         stop_grace=2, poll_interval=0.05)  # type: ignore[arg-type]
        made = _qemu(cfg, gateway)
    elif kind == "instant":
        made = _instant(tmp_path / "instant", gateway)
    else:
        made = _router(_local(request.getfixturevalue("local_cfg"), gateway), tmp_path / "instant")
    try:
        yield made
    finally:
        for d in made.made:
            await d.aclose()
        if not request.node.stash.get(PASSED, False):
            # Whatever the failed test left, and only its own VMs (other tests' are not ours). A test
            # that passed destroyed its VMs itself: listing them again would only cost time.
            reaper = made.make()
            for vm in await reaper.list_owned() & made.names:
                await reaper.destroy(vm)
            await reaper.aclose()
