"""Names are generated and validated before any command sees them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as s

from common.bootstrap import RunnerBootstrap
from common.errors import ConfigError
from orchestrator.catalog import BhyveConfig, ImageEntry, LinkNetwork
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.bhyve import BhyveDriver
from orchestrator.drivers.errors import NameInvalid
from orchestrator.names import (
    is_vm_name,
    validate_dataset_name,
    validate_link_name,
    validate_zone_name,
    vm_name,
    vm_of_vnic,
    vnic_name,
)
from tests.fakes.illumos.dladm import valid_linkname
from tests.fakes.illumos.host import FakeHost

BOOT = RunnerBootstrap("127.0.0.1:1", "tok")
INJECTIONS = [
    "solstice-abcdef12-1; rm -rf /",
    "solstice-abcdef12-1 && reboot",
    "$(reboot)",
    "`reboot`",
    "../../etc/passwd",
    "solstice-abcdef12-1/../x",
    "-rf",
    "solstice-abcdef12-1\n",
    "solstice-ABCDEF12-1",
    "solstice-abcdef12-01",
    "solstice-abcdef1-1",
    "global",
    "",
]


@pytest.mark.parametrize("bad", INJECTIONS)
def test_vm_spec_refuses_bad_names(bad):
    with pytest.raises(NameInvalid):
        VmSpec(bad, "job", 1, "illumos-stable", BOOT)
    with pytest.raises(ValueError):  # NameInvalid is also a ValueError
        VmSpec(bad, "job", 1, "illumos-stable", BOOT)


@pytest.mark.parametrize("bad", INJECTIONS)
async def test_driver_refuses_bad_names_before_any_command(fake_host: FakeHost, bhyve_cfg: BhyveConfig, bad):
    driver = BhyveDriver(bhyve_cfg)
    for call in (driver.destroy, driver.stop, driver.console_tail):
        with pytest.raises(NameInvalid):
            await call(bad)
    assert fake_host.calls() == []


def test_job_ids_from_webhooks_never_reach_names():
    name = vm_name("$(reboot); rm -rf / #", 3)
    assert is_vm_name(name) and name.endswith("-3")
    assert vm_name("job-1", 1) == vm_name("job-1", 1) != vm_name("job-2", 1)


@given(s.text(min_size=1, max_size=200), s.integers(min_value=0, max_value=99999))
def test_every_generated_name_is_valid_everywhere(job_id, attempt):
    vm = vm_name(job_id, attempt)
    assert validate_zone_name(vm) == vm
    vnic = vnic_name(vm)
    assert valid_linkname(vnic) and validate_link_name(vnic) == vnic  # our rules == the fake dladm's
    assert vm_of_vnic(vnic) == vm
    assert validate_dataset_name(f"rpool/solstice/vms/{vm}")


@pytest.mark.parametrize("attempt", [-1, 100000, True, "1"])
def test_bad_attempts(attempt):
    with pytest.raises(NameInvalid):
        vm_name("job", attempt)


@pytest.mark.parametrize(
    ("name", "ok"),
    # illumos-gate libdladm dladm_valid_linkname: < 32 chars, no leading digit, a trailing
    # digit, [A-Za-z0-9_.]; nothing about leading zeros (an operator's net01 is a valid link).
    [("vnic0", True), ("vnic10", True), ("e1000g0", True), ("vnic01", True), ("net.2", True), ("_0", True),
     ("0vnic1", False), ("vnic", False), ("vn-ic1", False), ("a" * 31 + "1", False), ("a" * 30 + "1", True),
     ("", False), ("vnïc1", False)],
)
def test_link_rules_match_illumos(name, ok):
    assert valid_linkname(name) is ok
    if ok:
        assert validate_link_name(name) == name
    else:
        with pytest.raises(NameInvalid):
            validate_link_name(name)


@pytest.mark.parametrize("bad", ["rpool/a b", "1pool/x", "rpool//x", "rpool/x@s", "rpool/../x", "rpool/x;y", ""])
def test_dataset_rules(bad):
    with pytest.raises(NameInvalid):
        validate_dataset_name(bad)
    assert validate_dataset_name("rpool/images/x@2026-11-01", snapshot=True)


@pytest.mark.parametrize(
    "fields",
    [{"link": "igb0; reboot"}, {"dataset": "rpool/x y"}, {"snapshot": "a@b"}, {"ram": "4G; reboot"},
     {"vcpus": 33}, {"disk_size": "-1"}],
)
def test_catalog_refuses_bad_values(fields):
    base = {"dataset": "rpool/images/x", "snapshot": "v1", "link": "igb0"}
    with pytest.raises(ConfigError):
        ImageEntry(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"firmware": "efi"}, "firmware 'efi' is not one of"), ({"bootrom": "BHYVE_RELEASE\"x"}, "bootrom"),
     ({"bootrom": "relative.fd"}, "bootrom"), ({"egress": "none"}, "egress 'none' is not one of")],
)
def test_catalog_refuses_bad_boot_and_egress_settings(fields, message):
    base = {"dataset": "rpool/images/x", "snapshot": "v1", "link": "igb0"}
    with pytest.raises(ConfigError, match=message):
        ImageEntry(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [({}, "needs a cidr"), ({"cidr": "10.9.0.1/24"}, "has host bits set"), ({"cidr": "10.9.0.0/31"}, "no room"),
     ({"cidr": "10.9.0.0/24", "gateway": "10.8.0.1"}, "gateway 10.8.0.1 is outside"),
     ({"cidr": "10.9.0.0/24", "first": "10.9.0.9", "last": "10.9.0.5"}, "comes after"),
     ({"cidr": "10.9.0.0/24", "resolvers": ("dns.example",)}, "not an IPv4 address"),
     ({"dhcp": True, "cidr": "10.9.0.0/24"}, "either dhcp"), ({"cidr": "fd00::/64"}, "cidr")],
)
def test_address_pools_refuse_what_cannot_work(fields, message):
    with pytest.raises(ConfigError, match=message):
        LinkNetwork(**fields)


def test_every_image_link_needs_an_address_pool():
    image = ImageEntry(dataset="rpool/images/x", snapshot="v1", link="igb0")
    with pytest.raises(ConfigError, match="link igb0 has no address pool; add drivers.bhyve.links.igb0"):
        BhyveConfig(images={"x": image})
    pool = LinkNetwork(cidr="10.9.0.0/28", gateway="10.9.0.1", resolvers=("10.9.0.2",))
    assert BhyveConfig(images={"x": image}, links={"igb0": pool}).links["igb0"].candidates() == [
        f"10.9.0.{n}" for n in range(3, 15)]
    assert ImageEntry(dataset="rpool/images/x", snapshot="v1", link="igb0", firmware="bios").rom == "BHYVE_RELEASE_CSM"
