"""Guest addresses from per-link pools (leased in the state store) and per-image egress, through the fake."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import uuid
from pathlib import Path

import pytest

from common.bootstrap import RunnerBootstrap
from orchestrator.catalog import BhyveConfig, ImageEntry, LinkNetwork
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.errors import ProvisionError
from tests.drivers.support import IMAGE, POOL, SNAPSHOT, Gateway, bhyve_config
from tests.fakes.illumos import ipf
from tests.fakes.illumos.host import FakeHost

NOTHING = {"zones": [], "links": [], "datasets": []}


def net_of(host: FakeHost, vm: str) -> dict:
    (net,) = host.state()["zones"][vm]["config"]["nets"]
    return net


async def test_sixteen_concurrent_vms_get_sixteen_addresses_all_given_back(
    fake_host: FakeHost, pool_cfg: BhyveConfig, gateway: Gateway, lease_store
):
    # Two driver instances (two processes of one host, e.g. an old one still tearing down).
    drivers = [BhyveDriver(pool_cfg), BhyveDriver(pool_cfg)]
    for driver in drivers:
        driver.attach_store(lease_store, "host-a")
    specs = [gateway.spec() for _ in range(16)]
    await asyncio.gather(*(drivers[i % 2].prepare(s) for i, s in enumerate(specs)))
    addresses = [net_of(fake_host, s.name)["allowed-address"] for s in specs]
    assert len(set(addresses)) == 16
    assert all(ipaddress.ip_interface(a) in ipaddress.ip_network("10.9.0.0/24") and a.endswith("/24")
               for a in addresses)
    assert {net_of(fake_host, s.name)["defrouter"] for s in specs} == {"10.9.0.1"}
    leases = await lease_store.address_leases(POOL.name)
    assert sorted(f"{lease.address}/24" for lease in leases) == sorted(addresses)
    await asyncio.gather(*(drivers[i % 2].destroy(s.name) for i, s in enumerate(specs)))
    assert await lease_store.address_leases() == []
    assert fake_host.owned() == NOTHING
    for driver in drivers:
        await driver.aclose()


async def test_a_full_pool_fails_the_job_and_leaves_nothing(
    fake_host: FakeHost, tmp_path: Path, gateway: Gateway, lease_store
):
    tiny = LinkNetwork(cidr="10.9.0.0/29", gateway="10.9.0.1", first="10.9.0.5", last="10.9.0.6")
    driver = BhyveDriver(bhyve_config(fake_host, tmp_path / "s", links={"igb0": tiny}))
    driver.attach_store(lease_store, "host-a")
    held = [gateway.spec(), gateway.spec()]
    for spec in held:
        await driver.prepare(spec)
    with pytest.raises(ProvisionError, match="address pool 10.9.0.0/29 of link igb0 has no free address"):
        await driver.prepare(gateway.spec())
    assert sorted(fake_host.owned()["zones"]) == sorted(s.name for s in held)
    await driver.destroy(held[0].name)
    await driver.prepare(gateway.spec())  # the address came back
    assert len(await lease_store.address_leases()) == 2
    await driver.aclose()


async def test_a_pool_without_a_store_is_refused(fake_host: FakeHost, pool_cfg: BhyveConfig, gateway: Gateway):
    driver = BhyveDriver(pool_cfg)
    with pytest.raises(ProvisionError, match="no state store is attached"):
        await driver.prepare(gateway.spec())
    assert fake_host.owned() == NOTHING


async def test_a_dhcp_link_gets_no_address_and_no_lease(
    fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway, lease_store
):
    driver = BhyveDriver(bhyve_cfg)
    driver.attach_store(lease_store, "host-a")
    spec = gateway.spec()
    await driver.prepare(spec)
    assert "allowed-address" not in net_of(fake_host, spec.name)
    attrs = {a["name"] for a in fake_host.state()["zones"][spec.name]["config"]["attrs"]}
    assert "resolvers" not in attrs
    assert await lease_store.address_leases() == []
    await driver.destroy(spec.name)
    await driver.aclose()


async def test_egress_runner_lets_the_guest_reach_the_runner_address_only(
    fake_host: FakeHost, tmp_path: Path, gateway: Gateway, lease_store
):
    image = ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, link="igb0", egress="runner")
    cfg = bhyve_config(fake_host, tmp_path / "s", links={"igb0": POOL}, **{"illumos-stable": image})
    driver = BhyveDriver(cfg)
    driver.attach_store(lease_store, "host-a")
    spec = gateway.spec()
    await driver.prepare(spec)
    etc = fake_host.fs(f"/solstice/zones/{spec.name}/etc")
    assert (etc / "ipf.conf").stat().st_mode & 0o077 == 0
    await driver.boot(spec)
    await driver.wait_ready(spec, gateway.event(spec.bootstrap.token), 30)  # the runner still calls in
    rules = fake_host.state()["zones"][spec.name]["firewall"]  # what the brand loaded at READY
    host, port = spec.bootstrap.orchestrator.rsplit(":", 1)
    assert ipf.evaluate(rules["ipv4"], "out", "tcp", host, int(port)) == "pass"
    assert ipf.evaluate(rules["ipv4"], "out", "tcp", host, 22) == "block"
    assert ipf.evaluate(rules["ipv4"], "out", "udp", "10.9.0.1", 53) == "pass"  # the pool's resolver
    assert ipf.evaluate(rules["ipv4"], "out", "tcp", "93.184.216.34", 443) == "block"
    assert ipf.evaluate(rules["ipv4"], "in", "tcp", "10.9.0.20", 22) == "block"
    assert ipf.evaluate(rules["ipv6"], "out", "tcp", "2001:db8::1", 443) == "block"
    await driver.destroy(spec.name)
    assert fake_host.owned() == NOTHING
    await driver.aclose()


async def test_open_egress_writes_no_firewall(fake_host: FakeHost, bhyve_cfg: BhyveConfig, gateway: Gateway):
    driver = BhyveDriver(bhyve_cfg)
    spec = gateway.spec()
    await driver.prepare(spec)
    assert not fake_host.fs(f"/solstice/zones/{spec.name}/etc/ipf.conf").exists()
    await driver.destroy(spec.name)
    await driver.aclose()


async def test_egress_runner_needs_an_ip_runner_address(fake_host: FakeHost, tmp_path: Path):
    image = ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, link="igb0", egress="runner")
    cfg = bhyve_config(fake_host, tmp_path / "s", **{"illumos-stable": image})
    driver = BhyveDriver(dataclasses.replace(cfg))
    spec = VmSpec.for_job(str(uuid.uuid4()), 1, "illumos-stable", RunnerBootstrap("orch.example.org:50051", "t"))
    with pytest.raises(ProvisionError, match="egress: runner needs the runner address to be an IP address"):
        await driver.prepare(spec)
    assert fake_host.owned() == NOTHING
    await driver.aclose()
