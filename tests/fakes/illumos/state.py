"""On-disk state of the fake illumos host, shared by the fake tools.

Everything lives under ``$SOLSTICE_FAKE_ILLUMOS_ROOT``:

* ``state.json`` - zones, index order, datasets, links; read-modify-written
  under an exclusive ``flock`` on ``state.lock`` (so concurrent fake commands
  serialize, like zoneadm's per-zone and index locks do for real);
* ``faults.json`` - optional failure injection rules (see ``check_fault``);
* ``calls.log`` - one JSON line per fake tool invocation (argv), in order;
* ``config.json`` - ``{"runner_argv": [...]}``: what a fake ``zoneadm boot``
  starts as the "guest" (the runner);
* ``fs/`` - where absolute zone paths live (``/solstice/zones/x`` is
  ``$ROOT/fs/solstice/zones/x``).

Locale: the real tools ``gettext`` their messages, so a caller that matches
stderr on English text must run them with ``LC_ALL=C``. The fakes stand for a
host with translated catalogues: when the message locale (``LC_ALL``, else
``LC_MESSAGES``, else ``LANG``) is anything but ``C``/``POSIX``/unset, every
message ``err`` prints is "translated" (each word reversed), so English
matching fails exactly as it would on such a host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV_ROOT = "SOLSTICE_FAKE_ILLUMOS_ROOT"


def root() -> Path:
    value = os.environ.get(ENV_ROOT)
    if not value:
        sys.stderr.write(f"fake illumos: {ENV_ROOT} is not set\n")
        sys.exit(99)
    return Path(value)


def empty_state() -> dict[str, Any]:
    return {
        "zones": {},
        "index": [],
        "datasets": {},
        "links": {},
        "calls": {},
        "next_debugid": 1,
        "next_zoneid": 1,
        "txg": 1,
    }


@contextlib.contextmanager
def locked(base: Path | None = None) -> Iterator[dict[str, Any]]:
    """Yield the state for read-modify-write; saved atomically on normal exit."""
    base = base or root()
    with open(base / "state.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = base / "state.json"
        state = json.loads(path.read_text()) if path.exists() else empty_state()
        yield state
        tmp = base / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, path)


def read(base: Path | None = None) -> dict[str, Any]:
    base = base or root()
    with open(base / "state.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        path = base / "state.json"
        return json.loads(path.read_text()) if path.exists() else empty_state()


def host_path(path: str, base: Path | None = None) -> Path:
    """Where the fake keeps the absolute illumos path ``path``."""
    return (base or root()) / "fs" / path.lstrip("/")


def record_call(tool: str, argv: list[str]) -> None:
    base = root()
    line = json.dumps({"argv": [tool, *argv], "t": time.time()}) + "\n"
    with open(base / "calls.log", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)


def check_fault(state: dict[str, Any], tool: str, sub: str) -> dict[str, Any] | None:
    """Count this call and return the fault rule it triggers, if any.

    ``faults.json`` is a list of rules ``{"tool": "zfs", "sub": "clone",
    "nth": 1, "exit": 1, "stderr": "...", "delay": 0}``: the ``nth`` call
    (1-based, counted per tool+subcommand; 0 = every call) fails with that
    exit status and message, after sleeping ``delay`` seconds (a hung tool).
    """
    key = f"{tool} {sub}"
    state["calls"][key] = count = state["calls"].get(key, 0) + 1
    path = root() / "faults.json"
    if not path.exists():
        return None
    for rule in json.loads(path.read_text()):
        if rule.get("tool") == tool and rule.get("sub", sub) == sub and rule.get("nth", 0) in (0, count):
            return rule
    return None


def apply_fault(rule: dict[str, Any]) -> int:
    """Sleep ``delay`` (ending early, exit 1, if our parent dies) and return the exit status."""
    if rule.get("delay"):
        parent = os.getppid()
        deadline = time.monotonic() + float(rule["delay"])
        while time.monotonic() < deadline:
            if os.getppid() != parent:  # the caller was killed: a hung tool dies with it
                sys.exit(1)
            time.sleep(0.02)
    msg = rule.get("stderr", "injected failure")
    if msg:
        sys.stderr.write(msg.rstrip("\n") + "\n")
    return int(rule.get("exit", 1))


def message_locale() -> str:
    """The locale gettext would translate messages into (LC_ALL > LC_MESSAGES > LANG)."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return value
    return "C"


def translate(msg: str) -> str:
    """``msg`` as a translated catalogue would print it outside the C locale."""
    if message_locale().split(".")[0] in ("C", "POSIX"):
        return msg
    return "\n".join(" ".join(word[::-1] for word in line.split(" ")) for line in msg.split("\n"))


def err(msg: str) -> None:
    sys.stderr.write(translate(msg) + "\n")


def proc_start_time(pid: int) -> str | None:
    """Start time (clock ticks since boot) of a live, non-zombie pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]
