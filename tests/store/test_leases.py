"""Address leases (bhyve address pools): one VM per address, whoever asks at once."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.store import Store
from tests.store.conftest import OpenStores

POOL = "10.9.0.0/24"
CANDIDATES = [f"10.9.0.{n}" for n in range(10, 20)]


async def test_each_vm_gets_the_first_free_address_and_keeps_it(store: Store):
    assert await store.lease_address(POOL, "host-a", "vm-1", CANDIDATES) == "10.9.0.10"
    assert await store.lease_address(POOL, "host-a", "vm-2", CANDIDATES) == "10.9.0.11"
    # Asked again (a retried prepare): the same address, nothing new taken.
    assert await store.lease_address(POOL, "host-a", "vm-1", CANDIDATES) == "10.9.0.10"
    assert await store.lease_address("other", "host-a", "vm-3", CANDIDATES) == "10.9.0.10"  # pools are separate
    leases = await store.address_leases(POOL)
    assert [(lease.address, lease.host, lease.vm_name) for lease in leases] == [
        ("10.9.0.10", "host-a", "vm-1"), ("10.9.0.11", "host-a", "vm-2")]
    assert [lease.vm_name for lease in await store.address_leases(host="host-a")] == ["vm-1", "vm-2", "vm-3"]
    assert await store.address_leases(host="host-b") == []


async def test_released_addresses_are_handed_out_again_and_a_full_pool_says_none(store: Store):
    for n in range(len(CANDIDATES)):
        assert await store.lease_address(POOL, "host-a", f"vm-{n}", CANDIDATES) == CANDIDATES[n]
    assert await store.lease_address(POOL, "host-a", "vm-late", CANDIDATES) is None
    assert await store.release_address("host-a", "vm-3") is True
    assert await store.release_address("host-a", "vm-3") is False
    assert await store.lease_address(POOL, "host-a", "vm-late", CANDIDATES) == CANDIDATES[3]


async def test_a_vm_holds_one_address(store: Store):
    await store.lease_address(POOL, "host-a", "vm-1", CANDIDATES)
    with pytest.raises(ValueError, match="already holds 10.9.0.10 of pool 10.9.0.0/24"):
        await store.lease_address("192.168.0.0/24", "host-a", "vm-1", ["192.168.0.5"])
    with pytest.raises(ValueError):
        await store.lease_address(POOL, "", "vm-1", CANDIDATES)


async def test_sixteen_vms_on_four_hosts_at_once_never_share_an_address(open_stores: OpenStores):
    stores = await open_stores(4)
    many = [f"10.9.0.{n}" for n in range(2, 40)]

    async def lease(i: int) -> str | None:
        return await stores[i % 4].lease_address(POOL, f"host-{i % 4}", f"vm-{i}", many)

    got = await asyncio.gather(*(lease(i) for i in range(16)))
    assert None not in got and len(set(got)) == 16
    held = await stores[0].address_leases(POOL)
    assert sorted((lease.vm_name, lease.address) for lease in held) == sorted(
        (f"vm-{i}", address) for i, address in enumerate(got))
    await asyncio.gather(*(stores[i % 4].release_address(f"host-{i % 4}", f"vm-{i}") for i in range(16)))
    assert await stores[0].address_leases() == []
