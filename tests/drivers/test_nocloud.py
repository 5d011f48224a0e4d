"""The NoCloud seed is built exactly as the OmniOS bhyve brand builds it (illumos.md §6.1)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.bootstrap import RunnerBootstrap, read_user_data, render_user_data
from orchestrator.drivers.nocloud import Seed, SeedNet, build_seed_iso, meta_data, network_config, write_seed_dir

UUID = "4f6c2a3e-1b2c-4d5e-8f90-0123456789ab"
USER_DATA = render_user_data(RunnerBootstrap("10.0.0.5:50051", "eyJ.job.token"))


def seed(**kw) -> Seed:
    values = dict(instance_id=UUID, hostname="solstice-1a2b3c4d-1", user_data=USER_DATA,
                  nets=(SeedNet("net0", "2:8:20:a:b:c", "10.9.0.21/24", "10.9.0.1"),
                        SeedNet("net1", "2:8:20:d:e:f", "10.9.1.21/24")),
                  resolvers=("10.9.0.53", "10.9.0.54"), dns_domain="ci.example")
    values.update(kw)
    return Seed(**values)


def test_meta_data_names_the_instance_and_host():
    assert yaml.safe_load(meta_data(seed())) == {"instance-id": UUID, "local-hostname": "solstice-1a2b3c4d-1"}
    assert meta_data(seed()).startswith("instance-id:")  # keys sorted, as the brand's PyYAML dump


def test_network_config_is_the_brands_netplan_v2():
    doc = yaml.safe_load(network_config(seed()))
    assert doc == {"version": 2, "ethernets": {
        "net0": {"match": {"macaddress": "02:08:20:0a:0b:0c"}, "set-name": "net0", "addresses": ["10.9.0.21/24"],
                 "routes": [{"to": "0.0.0.0/0", "via": "10.9.0.1"}],
                 "nameservers": {"search": ["ci.example"], "addresses": ["10.9.0.53", "10.9.0.54"]}},
        # Nameservers go on the first interface only; no defrouter, no route.
        "net1": {"match": {"macaddress": "02:08:20:0d:0e:0f"}, "set-name": "net1", "addresses": ["10.9.1.21/24"]},
    }}


def test_no_addressed_net_means_no_network_config(tmp_path: Path):
    assert network_config(seed(nets=())) is None
    assert write_seed_dir(seed(nets=()), tmp_path / "d") == ["meta-data", "user-data"]


def test_user_data_is_copied_verbatim_and_private(tmp_path: Path):
    names = write_seed_dir(seed(), tmp_path / "d")
    assert names == ["meta-data", "network-config", "user-data"]
    assert (tmp_path / "d" / "user-data").read_text() == USER_DATA
    assert read_user_data(USER_DATA).token == "eyJ.job.token"
    assert all((tmp_path / "d" / n).stat().st_mode & 0o777 == 0o600 for n in names)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("field, value", [
    ("instance_id", "not-a-uuid"), ("hostname", "-bad"), ("resolvers", ("10.0.0",)),
])
def test_bad_values_are_refused(field: str, value: object):
    with pytest.raises(ValueError):
        seed(**{field: value})


@pytest.mark.parametrize("net", [
    dict(vnic="bad-name0", mac="2:8:20:a:b:c", address="10.0.0.2/24"),
    dict(vnic="net0", mac="zz:8:20:a:b:c", address="10.0.0.2/24"),
    dict(vnic="net0", mac="2:8:20:a:b:c", address="10.0.0.2"),
    dict(vnic="net0", mac="2:8:20:a:b:c", address="10.0.0.2/24", router="gw"),
])
def test_bad_nets_are_refused(net: dict):
    with pytest.raises(ValueError):
        SeedNet(**net)


async def test_the_iso_is_a_cidata_volume_holding_the_three_files(tmp_path: Path):
    iso = tmp_path / "cidata.iso"
    s = seed()
    await build_seed_iso(s, tmp_path / "seed", iso)
    assert s.smbios_serial == f"ds=nocloud;i={UUID}"
    isoinfo = shutil.which("isoinfo")
    assert isoinfo is not None, "isoinfo comes with genisoimage (scripts/ensure-vm-tools.sh)"
    info = subprocess.run([isoinfo, "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "Volume id: CIDATA" in info and "Rock Ridge signatures version" in info
    listing = subprocess.run([isoinfo, "-R", "-f", "-i", str(iso)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert sorted(listing) == ["/meta-data", "/network-config", "/user-data"]
    user_data = subprocess.run([isoinfo, "-R", "-x", "/user-data", "-i", str(iso)], capture_output=True,
                               check=True).stdout.decode()
    assert user_data == USER_DATA
    assert iso.stat().st_mode & 0o777 == 0o600
