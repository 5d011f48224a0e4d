"""A VM that is a process on this host (the local driver's runner, the qemu driver's QEMU).

Its directory holds ``pid``: the pid and the kernel's start time of the
process, so a restarted orchestrator finds it again and never signals a pid
the kernel has since given to another process. Stopping it signals its
process group (it was started in a session of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

PID_FILE = "pid"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None if it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():  # no procfs: best effort
            try:
                os.killpg(pid, 0)
                return "unknown"
            except (ProcessLookupError, PermissionError):
                return None
        return None
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def write_pid_file(directory: Path, pid: int) -> None:
    """Record ``pid`` and its start time in ``directory/pid`` (atomically)."""
    tmp = directory / f"{PID_FILE}.tmp"
    tmp.write_text(json.dumps({"pid": pid, "start": process_start_time(pid)}))
    os.replace(tmp, directory / PID_FILE)


def read_pid_file(directory: Path) -> tuple[int, str | None] | None:
    """The recorded ``(pid, start time)``, or None without a usable record."""
    try:
        info = json.loads((directory / PID_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return None
    return pid, info.get("start")


def recorded_pid(directory: Path) -> int | None:
    """The recorded pid if that process still runs and is the one recorded."""
    record = read_pid_file(directory)
    if record is None:
        return None
    pid, started = record
    now = process_start_time(pid)
    return pid if now is not None and now == started else None


def live_pid(proc: asyncio.subprocess.Process | None, directory: Path) -> int | None:
    """The VM's pid while it runs: ``proc`` if this process started it, else the pid file's."""
    if proc is not None:
        return proc.pid if proc.returncode is None else None
    return recorded_pid(directory)


async def wait_for_call_in(ready: asyncio.Event, timeout: float, poll: float, alive: Callable[[], bool]) -> str:
    """Wait until ``ready`` is set: ``"ready"``, ``"died"`` (``alive()`` turned false first)
    or ``"timeout"``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ready.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "timeout"
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ready.wait(), min(remaining, poll))
        if not ready.is_set() and not alive():
            return "died"
    return "ready"


async def kill_group(pid: int, grace: float, proc: asyncio.subprocess.Process | None,
                     alive: Callable[[], bool]) -> bool:
    """SIGTERM process group ``pid``, SIGKILL it after ``grace`` s; True once it is gone.

    ``proc`` (when this process started it) is awaited; otherwise ``alive`` is polled.
    """
    loop = asyncio.get_running_loop()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = loop.time() + wait
        while loop.time() < deadline:
            if proc is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), max(0.0, deadline - loop.time()))
                if proc.returncode is not None:
                    return True
            elif not alive():
                return True
            else:
                await asyncio.sleep(0.02)
    return False
