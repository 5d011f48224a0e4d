"""A job VM's network: its address from the link's pool, and its egress firewall.

**Addresses.** A link with a static pool (catalog ``LinkNetwork``) gives each
VM a free address, leased in the state store (``Store.lease_address``) so no
two VMs on any host sharing the pool get the same one. It becomes the net
resource's ``allowed-address`` (with the pool's prefix length) and
``defrouter``, plus the ``resolvers``/``dns-domain`` attributes: from those
the OmniOS brand writes the guest's NoCloud ``network-config`` (pkg5
``src/brand/bhyve/bootlib.py``) and zoneadmd turns on link protection for the
VNIC (``allowed-ips``: the guest cannot use another source address). A
``dhcp: true`` link gets none of this: its segment must run a DHCP server.

**Egress.** ``egress: runner`` limits what the guest may reach to the
orchestrator's runner address (plus the pool's resolvers, and DHCP on a dhcp
link). Of what illumos offers, link protection only checks *source*
addresses and an etherstub without a route cuts everything, the runner too;
so the driver uses ipfilter in the global zone: it writes
``<zonepath>/etc/ipf.conf`` (and ``ipf6.conf``) after ``zoneadm install``,
and the bhyve brand's READY poststate loads them into the zone's
GZ-controlled ipf stack at every boot (pkg5 ``src/brand/shared/firewall.ksh``
``setup_firewall``: ``ipf -GE``, ``ipf -GFa``, ``ipf -Gf``; a file that fails
to load fails the boot). viona, the bhyve NIC, runs the zone netstack's
packet hooks for guest traffic (illumos-gate
``usr/src/uts/intel/io/viona/viona_main.c`` "Nethook Support"; rules apply
to every interface of the zone), so the rules filter what the guest sends:
"out" is from the guest. By construction: the policy is written before the
first boot and the zone cannot boot without it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from orchestrator.catalog import LinkNetwork


@dataclass(frozen=True)
class GuestNetwork:
    """What the zone's net resource and attributes say about the guest's address."""

    address: str = ""  # "10.9.0.21/24"; "" on a dhcp link
    gateway: str = ""
    resolvers: tuple[str, ...] = ()
    dns_domain: str = ""


def guest_network(link: LinkNetwork, address: str | None) -> GuestNetwork:
    """The zone's view of ``address`` leased from ``link``'s pool (None on a dhcp link)."""
    if link.dhcp or address is None:
        return GuestNetwork()
    return GuestNetwork(f"{address}/{link.network.prefixlen}", link.gateway, link.resolvers, link.dns_domain)


def runner_endpoint(address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``HOST:PORT`` of the runner address as an IP and a port; ValueError for a host name."""
    host, _, port = address.rpartition(":")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"egress: runner needs the runner address to be an IP address, not {host!r} "
                         "(ipf rules are written with addresses; set grpc.advertise to an IP)") from None
    return ip, int(port)


def egress_rules(vm: str, runner: str, link: LinkNetwork) -> tuple[str, str]:
    """``ipf.conf`` and ``ipf6.conf`` that let VM ``vm`` reach ``runner`` (HOST:PORT) and nothing else."""
    ip, port = runner_endpoint(runner)
    head = [f"# Solstice CI egress policy 'runner' of VM {vm}: written by the driver, loaded into the",
            "# zone's GZ-controlled ipf by the bhyve brand at every boot. The first matching quick rule wins."]
    v4, v6 = list(head), list(head)
    target = v4 if ip.version == 4 else v6
    target.append(f"pass out quick proto tcp from any to {ip}/{ip.max_prefixlen} port = {port} flags S keep state")
    for resolver in link.resolvers:
        v4.append(f"pass out quick proto udp from any to {resolver}/32 port = 53 keep state")
        v4.append(f"pass out quick proto tcp from any to {resolver}/32 port = 53 flags S keep state")
    if link.dhcp:
        v4.append("pass out quick proto udp from any port = 68 to any port = 67 keep state")
        v4.append("pass in quick proto udp from any port = 67 to any port = 68")
    for rules in (v4, v6):
        rules += ["block out quick all", "block in quick all"]
    return "\n".join(v4) + "\n", "\n".join(v6) + "\n"
