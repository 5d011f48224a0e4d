"""Fake ``ipf``: the subset of ipf.conf(5) rules the driver writes, parsed strictly, and evaluated.

Grammar accepted (one rule per line, ``#`` comments; ipf(8), ipf.conf(5))::

    (pass|block) (in|out) [log] [quick] [proto (tcp|udp|icmp|tcp/udp)]
        (all | from ADDR [port = N] to ADDR [port = N]) [flags S] [keep state]

ADDR is ``any`` or an address with an optional ``/prefix`` (IPv6 only in
ipf6.conf, IPv4 only in ipf.conf). Anything else is a syntax error, as the
real parser would report it (wording UNCONFIRMED). ``evaluate`` applies
ipfilter's rule order: the last matching rule wins unless a ``quick`` rule
matched first; with no match the packet passes (ipf's default).

As a command: ``ipf -V`` prints a version; ``ipf [-6] -n -f FILE`` checks a
file without loading it (exit 1 with the problem on stderr).
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

from tests.fakes.illumos import state as st

PROTOS = ("tcp", "udp", "icmp", "tcp/udp")


class IpfSyntax(Exception):
    """A rule the parser refuses: ``line N: why``."""


def _addr(word: str, ipv6: bool, where: str) -> str:
    if word == "any":
        return "any"
    try:
        net = ipaddress.ip_network(word, strict=False)
    except ValueError:
        raise IpfSyntax(f"{where}: bad address '{word}'") from None
    if (net.version == 6) != ipv6:
        raise IpfSyntax(f"{where}: address '{word}' is not {'IPv6' if ipv6 else 'IPv4'}")
    return str(net)


def parse(text: str, ipv6: bool = False) -> list[dict[str, Any]]:
    """The rules of an ipf.conf text; ``IpfSyntax`` on the first bad line."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"line {number}"
        words = line.split()
        rule: dict[str, Any] = {"proto": None, "src": "any", "sport": None, "dst": "any", "dport": None,
                                "quick": False, "keep_state": False}
        if words[0] not in ("pass", "block"):
            raise IpfSyntax(f"{where}: unknown action '{words[0]}'")
        rule["action"] = words.pop(0)
        if not words or words[0] not in ("in", "out"):
            raise IpfSyntax(f"{where}: missing in/out")
        rule["direction"] = words.pop(0)
        if words[:1] == ["log"]:
            words.pop(0)
        if words[:1] == ["quick"]:
            rule["quick"] = True
            words.pop(0)
        if words[:1] == ["proto"]:
            if len(words) < 2 or words[1] not in PROTOS:
                raise IpfSyntax(f"{where}: unknown protocol")
            rule["proto"] = words[1]
            del words[:2]
        if words[:1] == ["all"]:
            words.pop(0)
        elif words[:1] == ["from"] and len(words) >= 2:
            rule["src"] = _addr(words[1], ipv6, where)
            del words[:2]
            rule["sport"] = _take_port(words, where)
            if words[:1] != ["to"] or len(words) < 2:
                raise IpfSyntax(f"{where}: missing 'to'")
            rule["dst"] = _addr(words[1], ipv6, where)
            del words[:2]
            rule["dport"] = _take_port(words, where)
        else:
            raise IpfSyntax(f"{where}: expected 'all' or 'from'")
        if (rule["sport"] or rule["dport"]) and rule["proto"] not in ("tcp", "udp", "tcp/udp"):
            raise IpfSyntax(f"{where}: ports need proto tcp or udp")
        if words[:2] == ["flags", "S"]:
            del words[:2]
        if words[:2] == ["keep", "state"]:
            rule["keep_state"] = True
            del words[:2]
        if words:
            raise IpfSyntax(f"{where}: syntax error at '{words[0]}'")
        rules.append(rule)
    return rules


def _take_port(words: list[str], where: str) -> int | None:
    if words[:1] != ["port"]:
        return None
    if len(words) < 3 or words[1] != "=" or not words[2].isdigit() or not 0 < int(words[2]) < 65536:
        raise IpfSyntax(f"{where}: bad port specification")
    port = int(words[2])
    del words[:3]
    return port


def _matches(rule: dict[str, Any], direction: str, proto: str, dst: str, dport: int | None) -> bool:
    if rule["direction"] != direction:
        return False
    if rule["proto"] and proto not in rule["proto"].split("/"):
        return False
    if rule["dst"] != "any" and ipaddress.ip_address(dst) not in ipaddress.ip_network(rule["dst"]):
        return False
    return rule["dport"] is None or rule["dport"] == dport


def evaluate(rules: list[dict[str, Any]], direction: str, proto: str, dst: str, dport: int | None = None) -> str:
    """``pass`` or ``block`` for a packet leaving (``out``) or entering (``in``) the zone."""
    verdict = "pass"
    for rule in rules:
        if _matches(rule, direction, proto, dst, dport):
            verdict = rule["action"]
            if rule["quick"]:
                break
    return verdict


def main(argv: list[str]) -> int:
    st.record_call("ipf", argv)
    if argv == ["-V"]:
        print("ipf: IP Filter: v4.1.9 (fake)\nKernel: IP Filter: v4.1.9\nRunning: yes")
        return 0
    ipv6 = "-6" in argv
    args = [a for a in argv if a != "-6"]
    if args[:2] != ["-n", "-f"] or len(args) != 3:
        st.err("usage: ipf [-6AdDEGInoPRrsvVyzZ] [-l block|pass|nomatch] [-F i|o|a|s|S] -f filename")
        return 1
    try:
        with open(args[2]) as f:
            parse(f.read(), ipv6=ipv6)
    except OSError as e:
        st.err(f"{args[2]}: open: {e.strerror}")
        return 1
    except IpfSyntax as problem:
        st.err(f"{args[2]}: {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
