"""A NoCloud seed exactly as the OmniOS bhyve brand builds it (illumos.md §6.1).

The brand, for a zone whose ``cloud-init`` attribute names a user-data file:

* ``meta-data``: ``instance-id: <zone uuid>`` and ``local-hostname: <zone>``;
* ``user-data``: that file, copied verbatim;
* ``network-config`` (only with an allowed-address): netplan v2 with, per
  net, ``match: {macaddress}`` (zero-padded), ``set-name: <vnic>``,
  ``addresses``, ``routes: [{to: 0.0.0.0/0, via: <defrouter>}]`` and, on the
  first interface only, ``nameservers``;
* ``mkisofs -full-iso9660-filenames -untranslated-filenames -rock -volid
  CIDATA -o cloud-init.iso <dir>``, attached as an AHCI CD, and the SMBIOS
  system serial ``ds=nocloud;i=<uuid>``.

The qemu driver and the image tests build the same seed, so a guest that
boots here boots the same way under bhyve. YAML is dumped as the brand's
Python does (PyYAML, keys sorted).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestrator.commands import run_command
from orchestrator.drivers.errors import DriverError
from orchestrator.names import validate_link_name, validate_zone_name

MKISOFS = ("mkisofs", "genisoimage")  # the brand's tool; Debian ships it as genisoimage
_MAC = re.compile(r"^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$")
_CIDR = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$")
_IP = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class SeedNet:
    """One ``net`` resource with an allowed-address: what network-config says about it."""

    vnic: str  # the name the guest gives the interface (set-name)
    mac: str  # as dladm prints it (octets not zero-padded) or padded
    address: str  # allowed-address, CIDR
    router: str = ""  # defrouter

    def __post_init__(self) -> None:
        validate_link_name(self.vnic)
        if not _MAC.fullmatch(self.mac):
            raise ValueError(f"{self.mac!r} is not a MAC address")
        if not _CIDR.fullmatch(self.address):
            raise ValueError(f"{self.address!r} is not an IPv4 address with a prefix length")
        if self.router and not _IP.fullmatch(self.router):
            raise ValueError(f"{self.router!r} is not an IPv4 address")


@dataclass(frozen=True)
class Seed:
    """Everything the seed of one VM says."""

    instance_id: str  # the zone's uuid
    hostname: str  # the zone name
    user_data: str
    nets: tuple[SeedNet, ...] = ()
    resolvers: tuple[str, ...] = ()
    dns_domain: str = ""

    def __post_init__(self) -> None:
        if not _UUID.fullmatch(self.instance_id):
            raise ValueError(f"{self.instance_id!r} is not a lowercase UUID")
        validate_zone_name(self.hostname)
        for resolver in self.resolvers:
            if not _IP.fullmatch(resolver):
                raise ValueError(f"{resolver!r} is not an IPv4 address")

    @property
    def smbios_serial(self) -> str:
        return f"ds=nocloud;i={self.instance_id}"


def padded_mac(mac: str) -> str:
    """dladm prints ``2:8:20:a:b:c``; the brand pads each octet for network-config."""
    return ":".join(octet.zfill(2) for octet in mac.lower().split(":"))


def meta_data(seed: Seed) -> str:
    return yaml.safe_dump({"instance-id": seed.instance_id, "local-hostname": seed.hostname}, sort_keys=True)


def network_config(seed: Seed) -> str | None:
    """netplan v2 as the brand writes it; None without any addressed net (no file then)."""
    if not seed.nets:
        return None
    ethernets: dict[str, dict[str, object]] = {}
    for index, net in enumerate(seed.nets):
        entry: dict[str, object] = {
            "match": {"macaddress": padded_mac(net.mac)},
            "set-name": net.vnic,
            "addresses": [net.address],
        }
        if net.router:
            entry["routes"] = [{"to": "0.0.0.0/0", "via": net.router}]
        if index == 0 and (seed.resolvers or seed.dns_domain):
            servers: dict[str, object] = {}
            if seed.dns_domain:
                servers["search"] = [seed.dns_domain]
            if seed.resolvers:
                servers["addresses"] = list(seed.resolvers)
            entry["nameservers"] = servers
        ethernets[net.vnic] = entry
    return yaml.safe_dump({"version": 2, "ethernets": ethernets}, sort_keys=True)


def write_seed_dir(seed: Seed, directory: Path) -> list[str]:
    """Write the seed files into ``directory`` (created 0700); their names."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    files = {"meta-data": meta_data(seed), "user-data": seed.user_data}
    network = network_config(seed)
    if network is not None:
        files["network-config"] = network
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o600)  # user-data carries the job token
    return sorted(files)


def find_mkisofs() -> str:
    for name in MKISOFS:
        path = shutil.which(name)
        if path:
            return path
    raise DriverError("neither mkisofs nor genisoimage is installed (Debian: apt-get install genisoimage)")


async def build_seed_iso(seed: Seed, directory: Path, iso: Path, mkisofs: str | None = None,
                         timeout: float = 60.0) -> None:
    """The CIDATA ISO of ``seed`` at ``iso``, built from files written to ``directory``."""
    write_seed_dir(seed, directory)
    argv: Sequence[str] = [mkisofs or find_mkisofs(), "-quiet", "-full-iso9660-filenames",
                           "-untranslated-filenames", "-rock", "-volid", "CIDATA", "-o", str(iso), str(directory)]
    await run_command(argv, timeout=timeout)
    iso.chmod(0o600)  # the brand makes it 0644 in a root-only zone path; here it sits in our state dir
