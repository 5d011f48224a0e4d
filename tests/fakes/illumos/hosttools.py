"""Fake read-only host tools ``check`` runs: ``kstat``, ``isainfo``, ``ping``, ``route``.

Their answers come from the ``host`` section of the fake state
(``FakeHost.set_host``): ``freemem_pages`` (in this machine's page size),
``arc_size``/``arc_c_min`` (bytes), ``isa`` (instruction set extensions,
``vmx``/``svm`` for hardware virtualisation), ``alive`` (addresses that answer
ping) and ``routes`` (CIDRs ``route -n get`` finds a route into). Output
formats are the real ones: ``kstat -p`` prints ``module:instance:name:stat``,
a TAB and the value; ``isainfo -x`` ``amd64: ext ...``; illumos ``ping HOST
TIMEOUT`` ``HOST is alive`` (exit 0) or ``no answer from HOST`` (exit 1);
``route -n get`` a block ending with ``interface:`` (wording of its failure
UNCONFIRMED: the exit status is what counts).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.fakes.illumos import state as st

DEFAULTS: dict[str, Any] = {"freemem_pages": 8 * 2**20, "arc_size": 0, "arc_c_min": 0,
                            "isa": ["vmx", "avx2", "sse4.2"], "alive": [], "routes": []}


def facts() -> dict[str, Any]:
    return {**DEFAULTS, **st.read().get("host", {})}


def kstat(argv: list[str]) -> int:
    if not argv or argv[0] != "-p":
        st.err("Usage: kstat [ -Cjlpq ] [ -T d|u ] [ -c class ] ... (fake: -p only)")
        return 2
    f = facts()
    known = {"unix:0:system_pages:freemem": f["freemem_pages"], "zfs:0:arcstats:size": f["arc_size"],
             "zfs:0:arcstats:c_min": f["arc_c_min"]}
    found = False
    for stat in argv[1:]:
        if stat in known:
            print(f"{stat}\t{known[stat]}")
            found = True
    return 0 if found else 1  # kstat exits 1 when no statistic matched


def isainfo(argv: list[str]) -> int:
    if argv != ["-x"]:
        st.err("usage: isainfo [ [-v] [-b | -k | -n] | -x ]")
        return 2
    ext = " ".join(facts()["isa"])
    print(f"amd64: {ext}\ni386: {ext}")
    return 0


def ping(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        st.err("usage: ping host [timeout]")
        return 2
    if argv[0] in facts()["alive"]:
        print(f"{argv[0]} is alive")
        return 0
    print(f"no answer from {argv[0]}")
    return 1


def route(argv: list[str]) -> int:
    if argv[:2] != ["-n", "get"] or len(argv) != 3:
        st.err("usage: route [ -fnpqv ] cmd [[ -<qualifers> ] args ] (fake: -n get only)")
        return 2
    address = ipaddress.ip_address(argv[2])
    for cidr in facts()["routes"]:
        if address in ipaddress.ip_network(cidr):
            print(f"   route to: {address}\ndestination: {cidr.split('/')[0]}\n       mask: /{cidr.split('/')[1]}\n"
                  "  interface: igb0")
            return 0
    st.err("route: writing to routing socket: No such process")
    return 1


TOOLS = {"kstat": kstat, "isainfo": isainfo, "ping": ping, "route": route}


def main(tool: str, argv: list[str]) -> int:
    st.record_call(tool, argv)
    return TOOLS[tool](argv)
