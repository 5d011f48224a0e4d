"""Choose a driver from configuration, and reconcile what a host holds.

``DRIVERS`` maps a configured name to a factory; ``register`` refuses a
duplicate name so two drivers can never silently shadow each other.
``reconcile`` is the buildomat-style loop body: list what really exists,
destroy every owned VM no live job claims.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from orchestrator.catalog import DriverConfig
from orchestrator.drivers.base import Driver
from orchestrator.drivers.errors import DriverError, UnknownDriver

log = logging.getLogger(__name__)

Factory = Callable[[DriverConfig], Driver]
DRIVERS: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Add a driver factory under ``name``; a second registration of a name is an error."""
    if name in DRIVERS:
        raise ValueError(f"a VM driver named {name!r} is already registered")
    DRIVERS[name] = factory


def _bhyve(config: DriverConfig) -> Driver:
    from orchestrator.drivers.bhyve import BhyveDriver

    return BhyveDriver(config.bhyve)


def _local(config: DriverConfig) -> Driver:
    from orchestrator.drivers.local import LocalDriver

    return LocalDriver(config.local)


def _qemu(config: DriverConfig) -> Driver:
    from orchestrator.drivers.qemu import QemuDriver

    return QemuDriver(config.qemu)


register("bhyve", _bhyve)
register("local", _local)
register("qemu", _qemu)


def make_driver(config: DriverConfig) -> Driver:
    """The driver ``config.driver`` names, built from its section of the config."""
    factory = DRIVERS.get(config.driver)
    if factory is None:
        raise UnknownDriver(f"unknown VM driver {config.driver!r}; choose one of: {', '.join(sorted(DRIVERS))}")
    return factory(config)


def attach_store(driver: Driver, store: object, host: str) -> None:
    """Hand the open state store and the node's name to every driver that wants them.

    The bhyve driver leases guest addresses there (``BhyveDriver.attach_store``);
    a router of several drivers (singlenode) passes it to each child.
    """
    for child in getattr(driver, "children", [driver]):
        attach = getattr(child, "attach_store", None)
        if attach is not None:
            attach(store, host)


def disk_caches(driver: Driver) -> object | None:
    """The ZFS caches of the driver (or of a router's bhyve child), None when it keeps none."""
    for child in getattr(driver, "children", [driver]):
        caches = getattr(child, "caches", None)
        if caches is not None:
            return caches
    return None


async def reconcile(driver: Driver, live_names: set[str]) -> list[str]:
    """Destroy every VM the driver owns that is not in ``live_names``; return their names.

    A VM whose destroy fails is logged and left for the next pass: one stuck
    VM must not stop the others from being reaped.
    """
    destroyed = []
    for name in sorted(await driver.list_owned() - set(live_names)):
        try:
            await driver.destroy(name)
        except DriverError as err:
            log.error("could not reap orphan VM", extra={"fields": {"vm": name, "error": str(err)}})
            continue
        log.info("reaped orphan VM", extra={"fields": {"vm": name}})
        destroyed.append(name)
    return destroyed
