"""Fake ``zonecfg`` (illumos.md §2, §8): command files, verification, export/info."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

from tests.fakes.illumos import state as st
from tests.fakes.illumos.dladm import valid_linkname
from tests.fakes.illumos.state import err
from tests.fakes.illumos.zonecfg_lex import Command, Token, lex

USAGE = """usage:\tzonecfg -z <zone> (interactive)
\tzonecfg -z <zone> [-f] <command file>
\tzonecfg -z <zone> <command> [; <command>...]"""

ZONE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
GLOBAL_PROPS = ("zonepath", "brand", "autoboot", "bootargs", "pool", "limitpriv", "scheduling-class",
                "ip-type", "hostid", "fs-allowed")
RESOURCES = {
    "fs": ("dir", "special", "raw", "type"),
    "net": ("address", "allowed-address", "physical", "mac-addr", "vlan-id", "global-nic", "defrouter"),
    "device": ("match",),
    "attr": ("name", "type", "value"),
    "dataset": ("name",),
}
RES_KEY = {"fs": "fs", "net": "nets", "device": "devices", "attr": "attrs", "dataset": "datasets"}
BRANDS = ("bhyve", "ipkg", "lipkg", "sparse", "pkgsrc", "lx", "kvm", "illumos", "emu")
TEMPLATES = {
    "OMNIbhyve": {"brand": "bhyve", "ip-type": "exclusive", "autoboot": "false"},
    "OMNIkvm": {"brand": "kvm", "ip-type": "exclusive", "autoboot": "false"},
    "OMNIsparse": {"brand": "sparse", "ip-type": "exclusive", "autoboot": "false"},
    "OMNIipkg": {"brand": "ipkg", "ip-type": "exclusive", "autoboot": "false"},
    "SUNWblank": {"ip-type": "shared", "autoboot": "false"},
    "SUNWdefault": {"ip-type": "shared", "autoboot": "false"},
}
STATES = ("configured", "incomplete", "installed", "ready", "running", "shutting_down", "down", "mounted")


class Stop(Exception):
    """Stop processing commands; ``code`` is the exit status (None: run cleanup)."""

    def __init__(self, code: int | None = None) -> None:
        self.code = code


def blank_config() -> dict[str, Any]:
    cfg: dict[str, Any] = {p: "" for p in GLOBAL_PROPS}
    cfg["autoboot"] = "false"
    for key in RES_KEY.values():
        cfg[key] = []
    return cfg


class Session:
    def __init__(self, state: dict[str, Any], zone: str, source: str | None) -> None:
        self.state = state
        self.zone = zone
        self.source = source  # file name for "On line N of F:", "" for stdin, None for argv
        existing = state["zones"].get(zone)
        self.exists = existing is not None
        self.cfg = copy.deepcopy(existing["config"]) if existing else None
        self.dirty = False
        self.saw_error = False
        self.res: tuple[str, dict[str, Any], int | None] | None = None  # (type, props, index if selected)
        self.line = 0

    # -- error reporting -------------------------------------------------
    def error(self, msg: str) -> None:
        if self.source is not None:
            where = f"On line {self.line} of {self.source}:" if self.source else f"On line {self.line}:"
            err(where)
        err(msg)
        self.saw_error = True

    @property
    def zstate(self) -> str:
        z = self.state["zones"].get(self.zone)
        return z["state"] if z else "configured"

    # -- commands --------------------------------------------------------
    def run(self, cmd: Command) -> None:
        self.line = cmd.line
        if cmd.error:
            self.error(f"syntax error on line {cmd.line}: {cmd.error}")
            raise Stop()
        words = [t.text for t in cmd.tokens]
        name = words[0]
        handler = getattr(self, "do_" + name.replace("-", "_"), None) if name.isidentifier() or name == "?" else None
        if name == "?":
            handler = self.do_help
        if handler is None:
            self.error(f"syntax error on line {cmd.line} at '{name}'" if self.source is not None
                       else f"syntax error at '{name}'")
            raise Stop()
        if self.cfg is None and name not in ("create", "help", "exit", "delete", "info", "export", "verify", "commit"):
            self.error(f"{self.zone}: No such zone configured")
            raise Stop(1)
        handler(cmd.tokens[1:])

    def syntax(self, tok: Token | str) -> None:
        text = tok.text if isinstance(tok, Token) else tok
        self.error(f"syntax error on line {self.line} at '{text}'" if self.source is not None
                   else f"syntax error at '{text}'")
        raise Stop()

    def do_help(self, toks: list[Token]) -> None:
        print(USAGE)

    def do_create(self, toks: list[Token]) -> None:
        force, template = False, "SUNWdefault"
        words = [t.text for t in toks]
        i = 0
        while i < len(words):
            w = words[i]
            if w == "-F":
                force = True
            elif w == "-b":
                template = "SUNWblank"
            elif w == "-t" and i + 1 < len(words):
                i += 1
                template = words[i] if words[i][:1].isupper() else "OMNI" + words[i]
            else:
                self.error(f"syntax error on line {self.line} of {self.source}" if self.source else "syntax error")
                err("usage:\tcreate [-b | -t <template> | -F]")
                raise Stop()
            i += 1
        if self.exists:
            installed = STATES.index(self.zstate) >= STATES.index("installed") and self.zstate != "mounted"
            if installed or self.zstate == "incomplete":
                self.error(f"Zone {self.zone} already installed; create not allowed.")
                raise Stop(1)
            if not force:
                self.error("Zone exists, input not from terminal and -F not specified:\n"
                           "create command ignored, exiting.")
                raise Stop(1)
            print(f"Zone {self.zone} already exists; overwriting.")
        if template not in TEMPLATES:
            self.error(f"{template}: No such zone configured")
            raise Stop()
        cfg = blank_config()
        cfg.update(TEMPLATES[template])
        self.cfg = cfg
        self.dirty = True

    def parse_assign(self, toks: list[Token]) -> tuple[str, Any]:
        if len(toks) < 3 or toks[1].text != "=" or toks[1].quoted:
            self.syntax(toks[1] if len(toks) > 1 else "EOF")
        prop = toks[0].text
        if toks[2].text == "[" and not toks[2].quoted:
            items, k = [], 3
            while k < len(toks) and toks[k].text != "]":
                if toks[k].text != ",":
                    items.append(toks[k].text)
                k += 1
            if k >= len(toks):
                self.syntax("EOF")
            rest = toks[k + 1:]
            value: Any = items
        else:
            value, rest = toks[2].text, toks[3:]
        if rest:
            self.syntax(rest[0])
        return prop, value

    def do_set(self, toks: list[Token]) -> None:
        prop, value = self.parse_assign(toks)
        assert self.cfg is not None
        if self.res is None:
            if prop not in GLOBAL_PROPS:
                self.error(f"{prop}: unknown property.")
                raise Stop()
            installed = STATES.index(self.zstate) >= STATES.index("installed") and self.exists
            if prop in ("zonepath", "brand") and installed:
                self.error(f"Zone {self.zone} already installed; set {prop} not allowed.")
                raise Stop()
            if prop == "brand" and value not in BRANDS:
                self.error(f"{value}: unknown brand.")
                raise Stop()
            if prop == "autoboot" and value not in ("true", "false"):
                self.error(f"{value}: invalid value for autoboot.")
                raise Stop()
            if prop == "ip-type" and value not in ("shared", "exclusive"):
                self.error(f"{value}: invalid ip-type.")
                raise Stop()
            self.cfg[prop] = value
        else:
            rtype, props, _ = self.res
            if prop not in RESOURCES[rtype]:
                self.error(f"{prop}: unknown property for resource {rtype}.")
                raise Stop()
            props[prop] = value
        self.dirty = True

    def do_clear(self, toks: list[Token]) -> None:
        if len(toks) != 1:
            self.syntax(toks[1] if toks else "EOF")
        assert self.cfg is not None
        if self.res is None:
            self.cfg[toks[0].text] = "" if toks[0].text != "autoboot" else "false"
        else:
            self.res[1].pop(toks[0].text, None)
        self.dirty = True

    def do_add(self, toks: list[Token]) -> None:
        if not toks:
            self.syntax("EOF")
        if self.res is None:
            rtype = toks[0].text
            if rtype not in RESOURCES:
                self.error(f"{rtype}: unknown resource type.")
                raise Stop()
            if len(toks) > 1:
                self.syntax(toks[1])
            props: dict[str, Any] = {"property": []} if rtype == "net" else {}
            if rtype == "fs":
                props["options"] = []
            self.res = (rtype, props, None)
            return
        rtype, props, _ = self.res
        if rtype == "fs" and toks[0].text == "options" and len(toks) >= 2:
            props["options"].extend(t.text for t in toks[1:] if t.text not in "[],")
        elif rtype == "net" and toks[0].text == "property" and len(toks) >= 2 and toks[1].text == "(":
            kv: dict[str, str] = {}
            k = 2
            while k + 2 < len(toks) and toks[k].text != ")":
                if toks[k + 1].text != "=":
                    self.syntax(toks[k + 1])
                kv[toks[k].text] = toks[k + 2].text
                k += 3
                if k < len(toks) and toks[k].text == ",":
                    k += 1
            if set(kv) != {"name", "value"}:
                self.error("property: name and value must both be specified")
                raise Stop()
            props["property"].append({"name": kv["name"], "value": kv["value"]})
        else:
            self.syntax(toks[0])
        self.dirty = True

    def match_resources(self, rtype: str, toks: list[Token]) -> list[int]:
        assert self.cfg is not None
        crit: dict[str, str] = {}
        k = 0
        while k < len(toks):
            if k + 2 >= len(toks):
                self.syntax(toks[-1])
            if toks[k + 1].text != "=":
                self.syntax(toks[k + 1])
            crit[toks[k].text] = toks[k + 2].text
            k += 3
        return [i for i, r in enumerate(self.cfg[RES_KEY[rtype]])
                if all(r.get(p) == v for p, v in crit.items())]

    def do_select(self, toks: list[Token]) -> None:
        if self.res is not None or not toks or toks[0].text not in RESOURCES:
            self.syntax(toks[0] if toks else "EOF")
        rtype = toks[0].text
        found = self.match_resources(rtype, toks[1:])
        if len(found) != 1:
            self.error(f"No such {rtype} resource." if not found else f"More than one {rtype} resource matches.")
            raise Stop()
        assert self.cfg is not None
        self.res = (rtype, copy.deepcopy(self.cfg[RES_KEY[rtype]][found[0]]), found[0])

    def do_remove(self, toks: list[Token]) -> None:
        force = bool(toks) and toks[0].text == "-F"
        toks = toks[1:] if force else toks
        if self.res is not None or not toks or toks[0].text not in RESOURCES:
            self.syntax(toks[0] if toks else "EOF")
        rtype = toks[0].text
        found = self.match_resources(rtype, toks[1:])
        if not found:
            self.error(f"No such {rtype} resource.")
            raise Stop()
        if len(found) > 1 and not force and len(toks) == 1:
            self.error("Input not from terminal and -F not specified:\nremove command ignored, exiting.")
            raise Stop(1)
        assert self.cfg is not None
        for i in reversed(found):
            del self.cfg[RES_KEY[rtype]][i]
        self.dirty = True

    def do_end(self, toks: list[Token]) -> None:
        if self.res is None:
            self.syntax("end")
        rtype, props, index = self.res
        problem = resource_problem(rtype, props)
        if problem:
            self.error(problem)
            raise Stop()
        assert self.cfg is not None
        if index is None:
            self.cfg[RES_KEY[rtype]].append(props)
        else:
            self.cfg[RES_KEY[rtype]][index] = props
        self.res = None
        self.dirty = True

    def do_cancel(self, toks: list[Token]) -> None:
        if self.res is None:
            self.syntax("cancel")
        self.res = None

    def do_verify(self, toks: list[Token]) -> None:
        if not self.verify():
            raise Stop()

    def verify(self) -> bool:
        if self.res is not None:
            self.error("resource specification incomplete")
            return False
        if self.cfg is None:
            self.error(f"{self.zone}: No such zone configured")
            return False
        problems = config_problems(self.cfg)
        if problems:
            for p in problems:
                self.error(p)
            self.error(f"Zone {self.zone} failed to verify")
            return False
        return True

    def do_commit(self, toks: list[Token]) -> None:
        if not self.commit():
            raise Stop()

    def commit(self) -> bool:
        if not self.verify():
            return False
        assert self.cfg is not None
        zones = self.state["zones"]
        if self.zone in zones:
            zones[self.zone]["config"] = copy.deepcopy(self.cfg)
        else:
            zones[self.zone] = {"state": "configured", "uuid": "", "debugid": self.state["next_debugid"],
                                "zoneid": None, "config": copy.deepcopy(self.cfg)}
            self.state["next_debugid"] += 1
            self.state["index"].append(self.zone)
        self.exists = True
        self.dirty = False
        return True

    def do_revert(self, toks: list[Token]) -> None:
        existing = self.state["zones"].get(self.zone)
        self.cfg = copy.deepcopy(existing["config"]) if existing else None
        self.dirty = False

    def do_delete(self, toks: list[Token]) -> None:
        force = any(t.text == "-F" for t in toks)
        if not self.exists:
            self.error(f"{self.zone}: No such zone configured")
            raise Stop(1)
        if not force:
            self.error("Input not from terminal and -F not specified:\ndelete command ignored, exiting.")
            raise Stop(1)
        if self.zstate in ("ready", "running", "shutting_down", "down", "mounted"):
            self.error(f"{self.zone}: Zone state is invalid for the requested operation")
            raise Stop(1)
        del self.state["zones"][self.zone]
        self.state["index"].remove(self.zone)
        self.cfg, self.exists, self.dirty = None, False, False
        raise Stop(0)

    def do_exit(self, toks: list[Token]) -> None:
        raise Stop()

    def do_export(self, toks: list[Token]) -> None:
        if self.cfg is None or not self.exists and not self.dirty:
            self.error(f"{self.zone}: No such zone configured")
            raise Stop(1)
        text = export_text(self.cfg)
        if len(toks) == 2 and toks[0].text == "-f":
            Path(toks[1].text).write_text(text)
        else:
            sys.stdout.write(text)

    def do_info(self, toks: list[Token]) -> None:
        if self.cfg is None:
            self.error(f"{self.zone}: No such zone configured")
            raise Stop(1)
        sys.stdout.write(info_text(self.zone, self.cfg, toks, self))


def resource_problem(rtype: str, props: dict[str, Any]) -> str | None:
    required = {"fs": ("dir", "special", "type"), "device": ("match",), "attr": ("name", "type", "value"),
                "dataset": ("name",), "net": ()}[rtype]
    for p in required:
        if not props.get(p):
            return f"{rtype}: {p} not specified"
    if rtype == "attr" and props["type"] not in ("boolean", "int", "string", "uint64"):
        return f"attr: invalid type '{props['type']}'"
    return None


def config_problems(cfg: dict[str, Any]) -> list[str]:
    out = []
    if not cfg.get("zonepath"):
        out.append("zonepath not specified")
    elif not cfg["zonepath"].startswith("/"):
        out.append(f"{cfg['zonepath']}: zonepath must be an absolute path")
    excl = cfg.get("ip-type") == "exclusive"
    for net in cfg["nets"]:
        phys = net.get("physical")
        if not phys:
            out.append("net: physical not specified")
            continue
        if excl:
            if ":" in phys:
                out.append(f"{phys}: logical interface name not allowed")
            elif not valid_linkname(phys):
                out.append(f"{phys}: invalid physical interface name")
            if net.get("address"):
                out.append("net: address cannot be specified for an exclusive IP type")
            if net.get("defrouter") and not net.get("allowed-address"):
                out.append(f"net: defrouter for {phys} cannot be specified without allowed-address "
                           "for an exclusive IP type")
        elif not net.get("address"):
            out.append("net: address not specified")
    for rtype, key in RES_KEY.items():
        for res in cfg[key]:
            problem = resource_problem(rtype, res)
            if problem:
                out.append(problem)
    return out


def export_text(cfg: dict[str, Any]) -> str:
    lines = ["create -b"]
    for p in GLOBAL_PROPS:
        if p == "autoboot" or cfg.get(p):
            lines.append(f"set {p}={cfg.get(p) or 'false'}")
    for fs in cfg["fs"]:
        lines.append("add fs")
        lines += [f'set {k}="{fs[k]}"' for k in RESOURCES["fs"] if fs.get(k)]
        lines += [f"add options {o}" if "=" not in o else f'add options "{o}"' for o in fs.get("options", [])]
        lines.append("end")
    for net in cfg["nets"]:
        lines.append("add net")
        lines += [f'set {k}="{net[k]}"' for k in RESOURCES["net"] if net.get(k)]
        lines += [f'add property (name={p["name"]},value="{p["value"]}")' for p in net.get("property", [])]
        lines.append("end")
    for rtype in ("device", "attr", "dataset"):
        for res in cfg[RES_KEY[rtype]]:
            lines.append(f"add {rtype}")
            lines += [f'set {k}="{res[k]}"' for k in RESOURCES[rtype] if res.get(k)]
            lines.append("end")
    return "\n".join(lines) + "\n"


def _v(value: str) -> str:
    return f'"{value}"' if " " in value else value


def info_text(zone: str, cfg: dict[str, Any], toks: list[Token], session: Session) -> str:
    out: list[str] = []
    want = toks[0].text if toks else None
    crit_toks = toks[1:]
    if want is None:
        out.append(f"zonename: {zone}")
        for p in GLOBAL_PROPS:
            out.append(f"{p}: {cfg.get(p) or ''}" if p != "autoboot" else f"autoboot: {cfg.get(p) or 'false'}")
    elif want in GLOBAL_PROPS or want == "zonename":
        return f"{want}: {zone if want == 'zonename' else cfg.get(want, '')}\n"
    elif want not in RESOURCES:
        session.syntax(toks[0])
    order = ("fs", "net", "device", "attr", "dataset")
    for rtype in order:
        if want is not None and rtype != want:
            continue
        indices = session.match_resources(rtype, crit_toks) if want else range(len(cfg[RES_KEY[rtype]]))
        if want and not indices:
            return f"No such {rtype} resource.\n"
        for i in indices:
            res = cfg[RES_KEY[rtype]][i]
            out.append(f"{rtype}:")
            keys = sorted(RESOURCES[rtype]) if rtype == "net" else RESOURCES[rtype]
            for k in keys:
                out.append(f"\t{k}: {_v(res[k])}" if res.get(k) else f"\t{k} not specified")
            if rtype == "fs":
                out.append(f"\toptions: [{','.join(res.get('options', []))}]")
            for p in res.get("property", []) if rtype == "net" else []:
                out.append(f'\tproperty: (name={p["name"]},value="{p["value"]}")')
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    st.record_call("zonecfg", argv)
    if len(argv) < 2 or argv[0] != "-z":
        err(USAGE)
        return 2
    zone, rest = argv[1], argv[2:]
    if not ZONE_NAME.fullmatch(zone):
        err(f"{zone}: Bogus zone name")
        err(USAGE)
        return 2
    if rest[:1] == ["-f"]:
        if len(rest) != 2:
            err(USAGE)
            return 2
        source = rest[1]
        if source == "-":
            text, source = sys.stdin.read(), ""
        else:
            path = Path(source)
            if path.exists() and not path.is_file():
                err(f"{source} is not a regular file.")
                return 1
            try:
                text = path.read_text()
            except OSError as e:
                err(f"could not open file {source}: {e.strerror}")
                return 1
    elif rest:
        text, source = " ".join(rest), None
    else:
        text, source = sys.stdin.read(), ""
    sub = "script"
    if source is None:
        sub = rest[0]
    with st.locked() as state:
        rule = st.check_fault(state, "zonecfg", sub)
    if rule:
        if "exit" in rule:
            return st.apply_fault(rule)
        st.apply_fault({**rule, "stderr": ""})
    if zone.startswith("SUNW"):
        err(f"{zone}: zones beginning with SUNW are read-only.")
        return 1
    with st.locked() as state:
        session = Session(state, zone, source)
        code: int | None = None
        for cmd in lex(text):
            if not cmd.tokens and not cmd.error:
                continue
            try:
                session.run(cmd)
            except Stop as stop:
                code = stop.code
                break
        if code is not None:
            return code
        # cleanup(): an open resource saves nothing; otherwise auto-commit.
        if session.res is not None:
            err("Resource incomplete.")
            return 1
        if session.dirty and not session.commit():
            return 1
        return 1 if session.saw_error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
