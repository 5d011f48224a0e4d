"""Fake ``zfs``: datasets, snapshots and clones with the real rules (illumos.md §4, §8).

Volumes hold data: a directory per volume and per volume snapshot under
``<fake root>/zvol-data/`` stands for the filesystem on it (the fake guest
shows a cache disk as that directory, vm.py). A snapshot copies the files; a
clone hard-links its snapshot's files (no bytes are copied, as a ZFS clone
shares blocks - but a file rewritten in place, not replaced, would change the
snapshot too: the tests replace files); rename moves them; destroy deletes.

User properties (``module:name``, e.g. ``solstice:runner-version``) can be
set on any dataset and are inherited like the real ones: ``zfs get`` on a
snapshot or a child shows its dataset's or parent's value, ``-`` when unset.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from tests.fakes.illumos import state as st
from tests.fakes.illumos.state import err

USAGE = """usage:
\tcreate [-p] [-o property=value] ... <filesystem>
\tcreate [-ps] [-b blocksize] [-o property=value] ... -V <size> <volume>
\tdestroy [-fnpRrv] <filesystem|volume>
\tdestroy [-dnpRrv] <filesystem|volume>@<snap>[%<snap>][,...]
\tsnapshot [-r] [-o property=value] ... <filesystem|volume>@<snap> ...
\tclone [-p] [-o property=value] ... <snapshot> <filesystem|volume>
\tlist [-Hp] [-r|-d max] [-o property[,...]] [-s property]...
\t    [-S property]... [-t type[,...]] [filesystem|volume|snapshot] ...
\tset <property=value> ... <filesystem|volume|snapshot> ...
\tget [-rHp] [-d max] [-o "all" | field[,...]]
\t    [-t type[,...]] [-s source[,...]]
\t    <"all" | property[,...]> [filesystem|volume|snapshot] ..."""

_COMPONENT = re.compile(r"^[A-Za-z0-9_.: -]+$")
_SIZE = re.compile(r"^([0-9]+)([KMGTP]?)$", re.I)


class Usage(Exception):
    pass


def usage_exit(msg: str | None = None) -> int:
    if msg:
        err(msg)
    err(USAGE)
    return 2


def parse_size(text: str) -> int | None:
    m = _SIZE.match(text)
    if not m:
        return None
    return int(m.group(1)) * 1024 ** "BKMGTP".index((m.group(2) or "B").upper())


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid dataset name (zfs_namecheck.c), or None."""
    if len(name) > 255:
        return "name is too long"
    base, at, snap = name.partition("@")
    if at and (not snap or "@" in snap or not _COMPONENT.match(snap)):
        return "invalid character in snapshot name" if snap else "empty component or misplaced '@'"
    parts = base.split("/")
    for p in parts:
        if not p:
            return "empty component or misplaced '@' or '#' delimiter in name"
        bad = [c for c in p if not _COMPONENT.match(c)]
        if bad:
            return f"invalid character '{bad[0]}' in name"
    if not parts[0][0].isalpha():
        return "pool name must begin with a letter"
    return None


def pool_of(name: str) -> str:
    return name.split("/")[0].split("@")[0]


def parent_of(name: str) -> str | None:
    base = name.split("@")[0]
    return base.rsplit("/", 1)[0] if "/" in base else None


def new_ds(state: dict[str, Any], kind: str, **props: Any) -> dict[str, Any]:
    state["txg"] += 1
    ds = {"type": kind, "origin": None, "volsize": None, "mountpoint": None, "in_use": False, "txg": state["txg"]}
    ds.update(props)
    return ds


def mountpoint(state: dict[str, Any], name: str) -> str | None:
    """Effective mountpoint of a filesystem (inherited from its parent)."""
    ds = state["datasets"].get(name)
    if ds is None or ds["type"] != "filesystem":
        return None
    if ds.get("mountpoint"):
        return ds["mountpoint"]
    parent = parent_of(name)
    if parent is None:
        return "/" + name
    pm = mountpoint(state, parent)
    return None if pm is None else pm.rstrip("/") + "/" + name.rsplit("/", 1)[1]


def children(state: dict[str, Any], name: str) -> list[str]:
    """Direct child datasets and snapshots of ``name``."""
    out = []
    for other in state["datasets"]:
        if other.startswith(name + "@") or parent_of(other) == name and "@" not in other:
            out.append(other)
    return sorted(out, key=lambda n: sort_key(state, n))


def descendants(state: dict[str, Any], name: str) -> list[str]:
    out = []
    for child in children(state, name):
        out.append(child)
        if "@" not in child:
            out.extend(descendants(state, child))
    return out


def clones_of(state: dict[str, Any], snap: str) -> list[str]:
    return sorted(n for n, d in state["datasets"].items() if d.get("origin") == snap)


def sort_key(state: dict[str, Any], name: str) -> tuple[Any, ...]:
    base, at, _ = name.partition("@")
    return (base.split("/"), 1 if at else 0, state["datasets"].get(name, {}).get("txg", 0))


def cmd_create(state: dict[str, Any], args: list[str]) -> int:
    parents, volsize, props = False, None, {}
    while args and args[0].startswith("-") and len(args[0]) > 1:
        flag = args.pop(0)
        if flag == "-p":
            parents = True
        elif flag in ("-V", "-o", "-b") and args:
            value = args.pop(0)
            if flag == "-V":
                volsize = parse_size(value)
                if volsize is None:
                    err(f"bad volume size '{value}'")
                    return usage_exit()
            elif flag == "-o":
                k, _, v = value.partition("=")
                props[k] = v
        elif flag == "-s":
            continue
        else:
            return usage_exit(f"invalid option '{flag[1:]}'")
    if len(args) != 1:
        return usage_exit("missing filesystem argument" if not args else "too many arguments")
    name = args[0]
    problem = name_problem(name) if "@" not in name else "snapshot delimiter '@' is not expected here"
    if problem:
        err(f"cannot create '{name}': {problem}")
        return 1
    if name in state["datasets"]:
        if parents:
            return 0
        err(f"cannot create '{name}': dataset already exists")
        return 1
    parent = parent_of(name)
    if parent is None:
        err(f"cannot create '{name}': missing dataset name")
        return 1
    if parent not in state["datasets"]:
        if not parents:
            err(f"cannot create '{name}': parent does not exist")
            return 1
        make_parents(state, parent)
    if state["datasets"][parent]["type"] != "filesystem":
        err(f"cannot create '{name}': parent is not a filesystem")
        return 1
    kind = "volume" if volsize is not None else "filesystem"
    state["datasets"][name] = new_ds(state, kind, volsize=volsize, mountpoint=props.get("mountpoint"),
                                     user_props={k: v for k, v in props.items() if ":" in k})
    return 0


def make_parents(state: dict[str, Any], name: str) -> None:
    parent = parent_of(name)
    if parent is not None and parent not in state["datasets"]:
        make_parents(state, parent)
    if name not in state["datasets"]:
        state["datasets"][name] = new_ds(state, "filesystem")


def cmd_snapshot(state: dict[str, Any], args: list[str]) -> int:
    args = [a for a in args if a != "-r"]
    if len(args) != 1 or "@" not in args[0]:
        return usage_exit()
    name = args[0]
    base = name.split("@")[0]
    if base not in state["datasets"]:
        err(f"cannot open '{base}': dataset does not exist")
        return usage_exit()
    problem = name_problem(name)
    if problem:
        err(f"cannot create snapshot '{name}': {problem}")
        return 1
    if name in state["datasets"]:
        err(f"cannot create snapshot '{name}': dataset already exists")
        return 1
    src = state["datasets"][base]
    state["datasets"][name] = new_ds(state, "snapshot", volsize=src.get("volsize"), snap_of=src["type"])
    return 0


def cmd_clone(state: dict[str, Any], args: list[str]) -> int:
    parents, props = False, {}
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "-p":
            parents = True
        elif flag == "-o" and args:
            k, _, v = args.pop(0).partition("=")
            props[k] = v
        else:
            return usage_exit(f"invalid option '{flag[1:]}'")
    if len(args) != 2:
        return usage_exit("missing source dataset argument" if not args else
                          "missing target dataset argument" if len(args) == 1 else "too many arguments")
    snap, target = args
    if "@" not in snap:
        err(f"cannot open '{snap}': missing '@' delimiter in snapshot name")
        return 1
    if snap not in state["datasets"]:
        err(f"cannot open '{snap}': dataset does not exist")
        return 1
    problem = name_problem(target) if "@" not in target else "snapshot delimiter '@' is not expected here"
    if problem:
        err(f"cannot create '{target}': {problem}")
        return 1
    if target in state["datasets"]:
        if parents:
            return 0
        err(f"cannot create '{target}': dataset already exists")
        return 1
    if pool_of(snap) != pool_of(target):
        err(f"cannot create '{target}': source and target pools differ")
        return 1
    parent = parent_of(target)
    if parent is None or parent not in state["datasets"]:
        if not parents or parent is None:
            err(f"cannot create '{target}': parent does not exist")
            return 1
        make_parents(state, parent)
    if state["datasets"][parent]["type"] != "filesystem":
        err(f"cannot create '{target}': parent is not a filesystem")
        return 1
    src = state["datasets"][snap]
    state["datasets"][target] = new_ds(
        state, src.get("snap_of", "volume"), origin=snap, volsize=src.get("volsize"),
        mountpoint=props.get("mountpoint"),
    )
    return 0


def destroy(state: dict[str, Any], name: str, recursive: bool, recursive_clones: bool, what: str = "") -> int:
    """``zfs destroy`` semantics; also used by the fake ``zoneadm uninstall``."""
    ds = state["datasets"]
    if "@" in name:
        base = name.split("@")[0]
        if base not in ds:
            err(f"cannot open '{base}': dataset does not exist")
            return 1
        if name not in ds:
            err("could not find any snapshots to destroy; check snapshot names.")
            return 1
        doomed = [name]
    else:
        if name not in ds:
            err(f"cannot open '{name}': dataset does not exist")
            return 1
        if parent_of(name) is None:
            err(f"cannot destroy '{name}': operation does not apply to pools")
            err(f"use 'zfs destroy -r {name}' to destroy all datasets in the pool")
            err(f"use 'zpool destroy {name}' to destroy the pool itself")
            return 1
        kids = children(state, name)
        if kids and not (recursive or recursive_clones):
            err(f"cannot destroy '{name}': {ds[name]['type']} has children")
            err("use '-r' to destroy the following datasets:")
            for kid in descendants(state, name):
                err(kid)
            return 1
        doomed = [name, *descendants(state, name)]
    # Clones that depend on a snapshot in the doomed set but live outside it.
    outside: list[str] = []
    for n in doomed:
        if "@" in n:
            outside.extend(c for c in clones_of(state, n) if c not in doomed)
    if outside:
        if not recursive_clones:
            kind = "snapshot" if "@" in name else ds[name]["type"]
            err(f"cannot destroy '{name}': {kind} has dependent clones")
            err("use '-R' to destroy the following datasets:")
            for c in sorted(set(outside)):
                err(c)
            return 1
        for c in sorted(set(outside)):
            if c in ds:
                rc = destroy(state, c, True, True)
                if rc:
                    return rc
    for n in doomed:
        if ds.get(n, {}).get("in_use"):
            err(f"cannot destroy '{n}': dataset is busy")
            return 1
    for n in sorted(doomed, key=lambda x: -len(x)):
        ds.pop(n, None)
    return 0


def cmd_destroy(state: dict[str, Any], args: list[str]) -> int:
    flags = set()
    while args and args[0].startswith("-"):
        for ch in args.pop(0)[1:]:
            if ch not in "fnpRrvd":
                return usage_exit(f"invalid option '{ch}'")
            flags.add(ch)
    if len(args) != 1:
        return usage_exit("missing dataset argument" if not args else "too many arguments")
    if "n" in flags:
        return 0
    return destroy(state, args[0], "r" in flags, "R" in flags)


LIST_FIELDS = ("name", "origin", "type", "volsize", "mountpoint", "used", "avail", "refer")
TYPES = {"filesystem": "filesystem", "fs": "filesystem", "volume": "volume", "vol": "volume",
         "snapshot": "snapshot", "snap": "snapshot"}


def user_prop(state: dict[str, Any], name: str, prop: str) -> str:
    """A user property (``module:name``): set here, else inherited (a snapshot from its dataset), else ``-``."""
    while name:
        d = state["datasets"].get(name, {})
        if prop in d.get("user_props", {}):
            return d["user_props"][prop]
        name = name.split("@")[0] if "@" in name else (parent_of(name) or "")
    return "-"


def prop_value(state: dict[str, Any], name: str, prop: str, parsable: bool) -> str:
    d = state["datasets"][name]
    if ":" in prop:
        return user_prop(state, name, prop)
    if prop == "name":
        return name
    if prop == "origin":
        return d.get("origin") or "-"
    if prop == "type":
        return d["type"]
    if prop == "volsize":
        return str(d["volsize"]) if d.get("volsize") is not None else "-"
    if prop == "mountpoint":
        if d["type"] != "filesystem":
            return "-"
        return mountpoint(state, name) or "none"
    if prop in ("used", "refer") and data_dir(name).is_dir():
        size = sum(f.stat().st_size for f in data_dir(name).rglob("*") if f.is_file())
        return str(size) if parsable else f"{size}B"  # the files on the volume (zvol-data above)
    return "0" if parsable else "0B"


def cmd_list(state: dict[str, Any], args: list[str]) -> int:
    header, parsable, recursive, depth = True, False, False, None
    fields = ["name", "used", "avail", "refer", "mountpoint"]
    types = {"filesystem", "volume"}
    names: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                if ch == "H":
                    header = False
                elif ch == "p":
                    parsable = True
                elif ch == "r":
                    recursive = True
                elif ch in "odtsS":
                    value = a[j + 1:] or (args[i + 1] if i + 1 < len(args) else None)
                    if value is None:
                        return usage_exit(f"missing argument for '{ch}' option")
                    if not a[j + 1:]:
                        i += 1
                    if ch == "o":
                        fields = value.split(",")
                        bad = [f for f in fields if f not in LIST_FIELDS and ":" not in f]
                        if bad:
                            err(f"bad property list: invalid property '{bad[0]}'")
                            return usage_exit()
                    elif ch == "d":
                        depth, recursive = int(value), True
                    elif ch == "t":
                        types = set()
                        for t in value.split(","):
                            if t == "all":
                                types |= {"filesystem", "volume", "snapshot"}
                            elif t in TYPES:
                                types.add(TYPES[t])
                            else:
                                err(f"invalid type '{t}'")
                                return usage_exit()
                    break
                else:
                    return usage_exit(f"invalid option '{ch}'")
                j += 1
        else:
            names.append(a)
        i += 1
    rc = 0
    rows: list[str] = []
    if names:
        for n in names:
            if n not in state["datasets"]:
                err(f"cannot open '{n}': dataset does not exist")
                rc = 1
                continue
            rows.append(n)
            if recursive:
                for d in descendants(state, n):
                    level = d.split("@")[0].count("/") - n.count("/") + ("@" in d)
                    if depth is None or level <= depth:
                        rows.append(d)
    else:
        rows = list(state["datasets"])
    rows = [r for r in dict.fromkeys(rows) if state["datasets"][r]["type"] in types or r in names]
    rows.sort(key=lambda n: sort_key(state, n))
    table = [[prop_value(state, r, f, parsable) for f in fields] for r in rows]
    if header:
        widths = [max([len(f)] + [len(row[k]) for row in table]) for k, f in enumerate(fields)]
        print("  ".join(f.upper().ljust(w) for f, w in zip(fields, widths)).rstrip())
        for row in table:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    else:
        for row in table:
            print("\t".join(row))
    return rc


def cmd_set(state: dict[str, Any], args: list[str]) -> int:
    if len(args) < 2 or "=" not in args[0]:
        return usage_exit("missing property=value argument(s)" if args else None)
    prop, _, value = args[0].partition("=")
    rc = 0
    for name in args[1:]:
        d = state["datasets"].get(name)
        if d is None:
            err(f"cannot open '{name}': dataset does not exist")
            rc = 1
            continue
        if prop == "volsize":
            size = parse_size(value)
            if d["type"] != "volume":
                err(f"cannot set property for '{name}': 'volsize' does not apply to datasets of this type")
                rc = 1
            elif size is None:
                err(f"cannot set property for '{name}': bad numeric value '{value}'")
                rc = 1
            elif size < (d.get("volsize") or 0) and d.get("in_use"):
                err(f"cannot set property for '{name}': volume is busy")
                rc = 1
            else:
                d["volsize"] = size
        elif ":" in prop:  # a user property: module:name
            d.setdefault("user_props", {})[prop] = value
        elif prop == "mountpoint":
            if d["type"] != "filesystem":
                err(f"cannot set property for '{name}': 'mountpoint' does not apply to datasets of this type")
                rc = 1
            else:
                d["mountpoint"] = value
        else:
            err(f"cannot set property for '{name}': invalid property '{prop}'")
            rc = 1
    return rc


def cmd_get(state: dict[str, Any], args: list[str]) -> int:
    header, parsable, fields = True, False, ["name", "property", "value", "source"]
    rest: list[str] = []
    while args:
        a = args.pop(0)
        if a.startswith("-") and len(a) > 1:
            for k, ch in enumerate(a[1:]):
                if ch == "H":
                    header = False
                elif ch == "p":
                    parsable = True
                elif ch == "o":
                    value = a[k + 2:] or (args.pop(0) if args else "")
                    fields = value.split(",")
                    break
                else:
                    return usage_exit(f"invalid option '{ch}'")
        else:
            rest.append(a)
    if len(rest) < 2:
        return usage_exit("missing property argument" if not rest else None)
    props, names = rest[0].split(","), rest[1:]
    rc = 0
    for n in names:
        if n not in state["datasets"]:
            err(f"cannot open '{n}': dataset does not exist")
            rc = 1
            continue
        for p in props:
            if p not in LIST_FIELDS and ":" not in p:
                err(f"bad property list: invalid property '{p}'")
                return usage_exit()
            row = {"name": n, "property": p, "value": prop_value(state, n, p, parsable), "source": "-"}
            print("\t".join(row[f] for f in fields))
    return rc


def cmd_rename(state: dict[str, Any], args: list[str]) -> int:
    """``zfs rename [-f] SRC DST`` (zfs_main.c zfs_do_rename, libzfs zfs_rename): the dataset, its
    snapshots and children move; clones keep following their origin snapshot under its new name.
    Renaming a snapshot renames it within its dataset only. The wording of the busy and
    cross-pool errors follows libzfs_dataset.c (2021); a busy zvol refusing is UNCONFIRMED."""
    args = [a for a in args if a != "-f"]
    if any(a.startswith("-") for a in args):
        return usage_exit(f"invalid option '{next(a for a in args if a.startswith('-'))[1:]}'")
    if len(args) != 2:
        return usage_exit("missing source dataset argument" if not args else
                          "missing target dataset argument" if len(args) == 1 else "too many arguments")
    src, dst = args
    ds = state["datasets"]
    if src not in ds:
        err(f"cannot open '{src}': dataset does not exist")
        return 1
    if ("@" in src) != ("@" in dst):
        err(f"cannot rename to '{dst}': snapshot delimiter '@' is not expected here" if "@" in dst else
            f"cannot rename to '{dst}': must be a snapshot name")
        return 1
    problem = name_problem(dst)
    if problem:
        err(f"cannot rename to '{dst}': {problem}")
        return 1
    if "@" in src and src.split("@")[0] != dst.split("@")[0]:
        err("cannot rename to '%s': snapshots must be part of same dataset" % dst)
        return 1
    if pool_of(src) != pool_of(dst):
        err(f"cannot rename to '{dst}': datasets must be within same pool")
        return 1
    if dst in ds:
        err(f"cannot rename to '{dst}': dataset already exists")
        return 1
    if "@" not in src:
        parent = parent_of(dst)
        if parent is None or parent not in ds:
            err(f"cannot rename to '{dst}': parent does not exist")
            return 1
        if dst.startswith(src + "/"):
            err(f"cannot rename to '{dst}': New dataset name cannot be a descendant of current dataset name")
            return 1
        if any(ds[n].get("in_use") for n in [src, *descendants(state, src)]):
            err(f"cannot rename '{src}': dataset is busy")
            return 1
    moved = {src: dst}
    if "@" not in src:
        for old in descendants(state, src):
            moved[old] = dst + old[len(src):]
    for old, new in moved.items():
        ds[new] = ds.pop(old)
        _RENAMED[old] = new
    for d in ds.values():
        if d.get("origin") in moved:
            d["origin"] = moved[d["origin"]]
    return 0


COMMANDS = {"rename": cmd_rename, "create": cmd_create, "snapshot": cmd_snapshot, "snap": cmd_snapshot, "clone": cmd_clone,
            "destroy": cmd_destroy, "list": cmd_list, "set": cmd_set, "get": cmd_get}


def main(argv: list[str]) -> int:
    st.record_call("zfs", argv)
    if not argv:
        return usage_exit("missing command")
    sub = argv[0]
    if sub not in COMMANDS:
        return usage_exit(f"unrecognized command '{sub}'")
    with st.locked() as state:
        rule = st.check_fault(state, "zfs", sub)
    if rule:
        if "exit" in rule:
            return st.apply_fault(rule)
        st.apply_fault({**rule, "stderr": ""})
    read_only = sub in ("list", "get")
    if read_only:
        return COMMANDS[sub](st.read(), argv[1:])
    with st.locked() as state:
        before = volumes(state)
        known = {n: dict(d) for n, d in state["datasets"].items()}
        rc = COMMANDS[sub](state, argv[1:])
        after = volumes(state)
        sync_data(state, known)
        # A fault rule with "zvol_node": false models a device node that never
        # shows up (whether it appears synchronously is UNCONFIRMED, §4).
        sync_zvol_nodes(set() if rule and rule.get("zvol_node") is False else after - before, before - after)
    return rc


_RENAMED: dict[str, str] = {}  # this command's renames (cmd_rename), for the data directories


def data_dir(name: str) -> Path:
    """Where the fake keeps the files of volume (or volume snapshot) ``name``."""
    return st.root() / "zvol-data" / name


def sync_data(state: dict[str, Any], before: dict[str, dict[str, Any]]) -> None:
    """Make the data directories follow what the command did to volumes and their snapshots."""
    for old, new in _RENAMED.items():
        if data_dir(old).exists():
            data_dir(new).parent.mkdir(parents=True, exist_ok=True)
            data_dir(old).rename(data_dir(new))
    _RENAMED.clear()
    now = state["datasets"]
    for name in sorted(set(before) - set(now)):
        shutil.rmtree(data_dir(name), ignore_errors=True)
    for name in sorted(set(now) - set(before), key=lambda n: now[n].get("txg", 0)):
        d = now[name]
        if data_dir(name).exists() or not (d["type"] == "volume" or d.get("snap_of") == "volume"):
            continue
        target = data_dir(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if "@" in name and data_dir(name.split("@")[0]).is_dir():
            shutil.copytree(data_dir(name.split("@")[0]), target, symlinks=True)
        elif d.get("origin") and data_dir(d["origin"]).is_dir():
            shutil.copytree(data_dir(d["origin"]), target, symlinks=True, copy_function=os.link)
        else:
            target.mkdir()


def volumes(state: dict[str, Any]) -> set[str]:
    return {n for n, d in state["datasets"].items() if d["type"] == "volume"}


def sync_zvol_nodes(added: set[str], removed: set[str], base: Any = None) -> None:
    """Create / remove ``/dev/zvol/{dsk,rdsk}/<volume>`` under the fake root."""
    for kind in ("dsk", "rdsk"):
        for name in added:
            node = st.host_path(f"/dev/zvol/{kind}/{name}", base)
            node.parent.mkdir(parents=True, exist_ok=True)
            node.touch()
        for name in removed:
            st.host_path(f"/dev/zvol/{kind}/{name}", base).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
