"""Driver registry: choose by name, refuse duplicates; reconcile reaps only orphans."""

from __future__ import annotations

import pytest

from orchestrator.catalog import DriverConfig, LocalConfig
from orchestrator.drivers import registry
from orchestrator.drivers.base import Driver
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.errors import DriverError, UnknownDriver
from orchestrator.drivers.local import LocalDriver


def test_make_driver_by_name(tmp_path):
    local = registry.make_driver(DriverConfig(driver="local", local=LocalConfig(state_dir=tmp_path)))
    assert isinstance(local, LocalDriver) and local.name == "local"
    assert isinstance(local, Driver)
    bhyve = registry.make_driver(DriverConfig(driver="bhyve"))
    assert isinstance(bhyve, BhyveDriver) and isinstance(bhyve, Driver)


def test_unknown_driver():
    # Other modules (the node's test drivers) may have registered more names.
    names = ", ".join(sorted(registry.DRIVERS))
    with pytest.raises(UnknownDriver) as err:
        registry.make_driver(DriverConfig(driver="kvm"))
    assert str(err.value) == f"unknown VM driver 'kvm'; choose one of: {names}"
    assert {"bhyve", "local"} <= set(registry.DRIVERS)


def test_duplicate_registration_is_refused():
    before = dict(registry.DRIVERS)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("local", lambda cfg: LocalDriver(cfg.local))
    assert registry.DRIVERS == before


class ListingDriver:
    """A driver double for reconcile's own logic (no VM behind it)."""

    name = "listing"

    def __init__(self, owned: set[str], failing: set[str]) -> None:
        self.owned, self.failing, self.destroyed = set(owned), failing, []

    async def list_owned(self) -> set[str]:
        return set(self.owned)

    async def destroy(self, name: str) -> None:
        if name in self.failing:
            raise DriverError(f"{name} is stuck")
        self.destroyed.append(name)
        self.owned.discard(name)


async def test_reconcile_keeps_live_and_survives_a_stuck_vm():
    d = ListingDriver({"solstice-00000001-1", "solstice-00000002-1", "solstice-00000003-1"}, {"solstice-00000002-1"})
    reaped = await registry.reconcile(d, {"solstice-00000001-1", "solstice-99999999-1"})  # type: ignore[arg-type]
    assert reaped == ["solstice-00000003-1"]
    assert d.owned == {"solstice-00000001-1", "solstice-00000002-1"}


def test_attach_store_reaches_the_bhyve_driver_also_behind_a_router(bhyve_cfg, local_cfg):
    from orchestrator.drivers.bhyve import BhyveDriver
    from orchestrator.drivers.local import LocalDriver
    from orchestrator.drivers.registry import attach_store
    from orchestrator.singlenode.routing import LabelRouter

    store = object()
    alone, behind = BhyveDriver(bhyve_cfg), BhyveDriver(bhyve_cfg)
    attach_store(alone, store, "host-a")
    attach_store(LabelRouter(LocalDriver(local_cfg), {"illumos-stable": behind}), store, "host-b")
    assert (alone._store, alone._host) == (store, "host-a")
    assert (behind._store, behind._host) == (store, "host-b")
