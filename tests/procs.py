"""Finding a job's processes on the host, whether it runs contained (its own PID namespace) or not."""

from __future__ import annotations

import os
from pathlib import Path


def pid_namespace(pid: int) -> str | None:
    """The PID namespace of ``pid`` (``pid:[4026531836]``), None once it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def job_namespace(runner_pid: int) -> str | None:
    """The PID namespace a local job's processes live in: the runner's own, or (contained:
    ``runner_pid`` is ``unshare``) that of its child, the namespace's init."""
    own = pid_namespace(runner_pid)
    for child in children(runner_pid):
        theirs = pid_namespace(child)
        if theirs is not None and theirs != own:
            return theirs
    return own


def host_pid(namespace: str, ns_pid: int) -> int | None:
    """The host pid of the process that ``namespace`` numbers ``ns_pid`` (what ``$$`` printed there)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or pid_namespace(int(entry)) != namespace:
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                return int(entry)
    return None
