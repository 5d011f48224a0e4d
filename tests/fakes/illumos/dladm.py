"""Fake ``dladm``: VNICs over physical links with the real name rules (illumos.md §5, §8)."""

from __future__ import annotations

import random
import re
import sys
from typing import Any

from tests.fakes.illumos import state as st
from tests.fakes.illumos.state import err

USAGE = """usage:  dladm <subcommand> <args> ...
    show-link       [-pP] [-o <field>,..] [-s [-i <interval>]] [<link>]
    create-vnic     [-t] -l <link> [-m <value> | auto |
                    {factory [-n <slot-id>]} | {random [-r <prefix>]} |
                    {vrrp -V <vrid> -A {inet | inet6}} [-v <vid> [-f]]
                    [-p <prop>=<value>[,...]] <vnic-link>
    delete-vnic     [-t] <vnic-link>
    show-vnic       [-pP] [-l <link>] [-o <field>,..] [-s [-i <interval>]]
                    [<link>]"""

VNIC_FIELDS = ("link", "over", "speed", "macaddress", "macaddrtype", "vid", "zone")
LINK_FIELDS = ("link", "class", "mtu", "state", "bridge", "over")


def valid_linkname(name: str) -> bool:
    """illumos-gate libdladm ``dladm_valid_linkname``: shorter than MAXLINKNAMELEN (32),
    not starting with a digit, ending with one, only ``[A-Za-z0-9_.]``."""
    return bool(re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]{0,29}[0-9]", name, re.ASCII))


def usage() -> int:
    err(USAGE)
    return 1


def parse_opts(args: list[str], with_value: str, flags: str) -> tuple[dict[str, str], list[str]] | None:
    opts: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                if ch in with_value:
                    value = a[j + 1:] or (args[i + 1] if i + 1 < len(args) else None)
                    if value is None:
                        err(f"dladm: option requires an argument -- {ch}")
                        return None
                    if not a[j + 1:]:
                        i += 1
                    opts[ch] = value
                    break
                if ch not in flags:
                    err(f"dladm: illegal option -- {ch}")
                    return None
                opts[ch] = ""
                j += 1
        else:
            rest.append(a)
        i += 1
    return opts, rest


def cmd_create_vnic(state: dict[str, Any], args: list[str]) -> int:
    parsed = parse_opts(args, "lmvprnVA", "tf")
    if parsed is None:
        return usage()
    opts, rest = parsed
    if len(rest) != 1 or "l" not in opts:
        return usage()
    name, over = rest[0], opts["l"]
    if len(name) > 31:
        err(f"dladm: link name too long '{name}'")
        return 1
    if not valid_linkname(name):
        err(f"dladm: invalid link name '{name}'")
        return 1
    if "f" in opts and "v" not in opts:
        err("dladm: -f option can only be used with -v")
        return 1
    vid = 0
    if "v" in opts:
        if not opts["v"].isdigit() or not 1 <= int(opts["v"]) <= 4094:
            err(f"dladm: invalid VLAN identifier '{opts['v']}'")
            return 1
        vid = int(opts["v"])
    links = state["links"]
    if over not in links or links[over]["class"] == "vnic":
        err(f"dladm: invalid link name '{over}'")
        return 1
    if name in links:
        err(f"dladm: vnic creation over {over} failed: object already exists")
        return 1
    mac = opts.get("m", "random")
    if mac in ("auto", "random", "factory"):
        mac = "2:8:20:" + ":".join(f"{random.randrange(256):x}" for _ in range(3))
        kind = "random"
    else:
        kind = "fixed"
    links[name] = {"class": "vnic", "over": over, "vid": vid, "mac": mac, "macaddrtype": kind, "zone": None,
                   "temporary": "t" in opts}
    return 0


def cmd_delete_vnic(state: dict[str, Any], args: list[str]) -> int:
    parsed = parse_opts(args, "R", "t")
    if parsed is None:
        return usage()
    _, rest = parsed
    if len(rest) != 1:
        return usage()
    name = rest[0]
    link = state["links"].get(name)
    if link is None or link["class"] != "vnic":
        err(f"dladm: invalid link name '{name}'")
        return 1
    if link.get("zone"):
        err("dladm: vnic deletion failed: link busy")
        return 1
    del state["links"][name]
    return 0


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def show(rows: list[dict[str, str]], fields: list[str], parsable: bool) -> None:
    if parsable:
        for row in rows:
            print(row[fields[0]] if len(fields) == 1 else ":".join(escape(row[f]) for f in fields))
        return
    widths = [max([len(f)] + [len(r[f]) for r in rows]) + 1 for f in fields]
    print(" ".join(f.upper().ljust(w) for f, w in zip(fields, widths, strict=False)).rstrip())
    for r in rows:
        print(" ".join(r[f].ljust(w) for f, w in zip(fields, widths, strict=False)).rstrip())


def field_list(opts: dict[str, str], allowed: tuple[str, ...], default: tuple[str, ...]) -> list[str] | None:
    if "p" in opts and "o" not in opts:
        err("dladm: output fields must be specified in parsable mode")
        return None
    if "o" not in opts:
        return list(default)
    fields = [f.lower() for f in opts["o"].split(",")]
    if fields == ["all"]:
        if "p" in opts:
            err("dladm: 'all' is invalid in parsable mode")
            return None
        return list(allowed)
    bad = [f for f in fields if f not in allowed]
    if bad:
        err(f"dladm: invalid field(s) specified: {bad[0]}")
        return None
    return fields


def cmd_show_vnic(state: dict[str, Any], args: list[str]) -> int:
    parsed = parse_opts(args, "lois", "pP")
    if parsed is None:
        return usage()
    opts, rest = parsed
    fields = field_list(opts, VNIC_FIELDS, VNIC_FIELDS)
    if fields is None:
        return 1
    vnics = {n: link for n, link in state["links"].items() if link["class"] == "vnic"}
    if rest:
        if rest[0] not in vnics:
            err(f"dladm: invalid vnic name '{rest[0]}': object not found")
            return 1
        vnics = {rest[0]: vnics[rest[0]]}
    if "l" in opts:
        vnics = {n: link for n, link in vnics.items() if link["over"] == opts["l"]}
    rows = [
        {"link": n, "over": link["over"], "speed": "1000", "macaddress": link["mac"],
         "macaddrtype": link["macaddrtype"],
         "vid": str(link["vid"]), "zone": link.get("zone") or "--"}
        for n, link in sorted(vnics.items())
    ]
    show(rows, fields, "p" in opts)
    return 0


def cmd_show_link(state: dict[str, Any], args: list[str]) -> int:
    parsed = parse_opts(args, "ois", "pP")
    if parsed is None:
        return usage()
    opts, rest = parsed
    fields = field_list(opts, LINK_FIELDS, LINK_FIELDS)
    if fields is None:
        return 1
    links = state["links"]
    if rest:
        if rest[0] not in links:
            err(f"dladm: invalid link name '{rest[0]}'")
            return 1
        links = {rest[0]: links[rest[0]]}
    rows = [
        {"link": n, "class": link["class"], "mtu": "1500", "state": "up", "bridge": "--",
         "over": link.get("over") or "--"}
        for n, link in sorted(links.items())
    ]
    show(rows, fields, "p" in opts)
    return 0


COMMANDS = {"create-vnic": cmd_create_vnic, "delete-vnic": cmd_delete_vnic,
            "show-vnic": cmd_show_vnic, "show-link": cmd_show_link}


def main(argv: list[str]) -> int:
    st.record_call("dladm", argv)
    if not argv or argv[0] not in COMMANDS:
        if argv:
            err(f"dladm: unknown subcommand '{argv[0]}'")
        return usage()
    sub = argv[0]
    with st.locked() as state:
        rule = st.check_fault(state, "dladm", sub)
    if rule:
        if "exit" in rule:
            return st.apply_fault(rule)
        st.apply_fault({**rule, "stderr": ""})
    if sub.startswith("show-"):
        return COMMANDS[sub](st.read(), argv[1:])
    with st.locked() as state:
        return COMMANDS[sub](state, argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
