"""The clauses of orchestrator/drivers/base.py, proven on every driver (conftest.KINDS).

One test per clause: stop and destroy are idempotent, tolerate a VM that
never existed, and run safely concurrently with each other and with
reconciliation; a failed prepare (or boot) cleans up after itself and a
destroy after it is harmless; ``console_tail`` of an unknown VM is ``""``;
a fresh instance's ``list_owned`` finds the VMs a previous one made (and
can tear them down); ``aclose`` leaves the VMs running.
"""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.drivers.errors import ProvisionError
from orchestrator.drivers.registry import reconcile
from tests.drivers.contract.conftest import Kit


async def test_stop_and_destroy_of_a_vm_never_made_succeed(kit: Kit) -> None:
    driver = kit.driver()
    name = kit.spec().name
    await driver.stop(name)
    await driver.destroy(name)
    await driver.destroy(name)
    assert name not in await driver.list_owned()


async def test_console_tail_of_an_unknown_vm_is_empty(kit: Kit) -> None:
    driver = kit.driver()
    assert await driver.console_tail(kit.spec().name) == ""
    assert await driver.console_tail(kit.spec().name, lines=5) == ""


async def test_stop_is_idempotent_and_keeps_the_vm(kit: Kit) -> None:
    driver = kit.driver()
    spec = kit.spec()
    await kit.up(driver, spec)
    kit.assert_running(spec.name)
    await driver.stop(spec.name)
    await driver.stop(spec.name)
    kit.assert_running(spec.name, False)
    assert spec.name in await driver.list_owned()  # stopped, not gone: destroy removes it
    await driver.destroy(spec.name)
    assert spec.name not in await driver.list_owned()


async def test_destroy_is_idempotent(kit: Kit) -> None:
    driver = kit.driver()
    spec = kit.spec()
    await kit.up(driver, spec)
    await driver.destroy(spec.name)
    kit.assert_running(spec.name, False)
    await driver.destroy(spec.name)
    await driver.stop(spec.name)
    assert spec.name not in await driver.list_owned()
    assert await driver.console_tail(spec.name) == ""  # a VM that is gone has no console to show


async def test_stop_destroy_and_reconcile_run_safely_concurrently(kit: Kit) -> None:
    driver = kit.driver()
    spec, other = kit.spec(), kit.spec()
    await kit.up(driver, spec)
    await driver.prepare(other)  # a live job's VM, still provisioning
    # Live: every VM the driver lists but ``spec``.
    live = await driver.list_owned() - {spec.name}
    assert other.name in live
    await asyncio.gather(driver.stop(spec.name), driver.destroy(spec.name), driver.destroy(spec.name),
                         driver.stop(spec.name), reconcile(driver, live))
    kit.assert_running(spec.name, False)
    owned = await driver.list_owned()
    assert spec.name not in owned
    assert other.name in owned  # a live job's VM is left alone
    await driver.destroy(other.name)


async def test_destroy_after_a_failed_prepare_is_harmless(kit: Kit) -> None:
    spec = kit.spec()
    driver = kit.broken(spec)
    kit.made.append(driver)
    with pytest.raises(ProvisionError):
        await driver.prepare(spec)
        await driver.boot(spec)
    assert spec.name not in await driver.list_owned()  # it cleaned up what it had made
    await driver.stop(spec.name)
    await driver.destroy(spec.name)
    assert spec.name not in await driver.list_owned()


async def test_a_fresh_instance_finds_the_vms_of_the_previous_one(kit: Kit) -> None:
    first = kit.driver()
    spec = kit.spec()
    await kit.up(first, spec)
    # The first instance is simply dropped (the orchestrator crashed): nothing closed it.
    second = kit.driver()
    owned = await second.list_owned()
    assert spec.name in owned
    assert await reconcile(second, owned - {spec.name}) == [spec.name]
    kit.assert_running(spec.name, False)
    assert spec.name not in await second.list_owned()


async def test_aclose_leaves_the_vms(kit: Kit) -> None:
    first = kit.driver()
    spec = kit.spec()
    await kit.up(first, spec)
    await first.aclose()
    kit.assert_running(spec.name)
    second = kit.driver()
    assert spec.name in await second.list_owned()
    await second.stop(spec.name)
    kit.assert_running(spec.name, False)
    await second.destroy(spec.name)
    assert spec.name not in await second.list_owned()
