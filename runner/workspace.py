"""The files a job's steps work with: the checkout handed to the step user, the step scripts.

When the runner runs as root for a contained local job (``--step-user``), it
checks the commit out itself (the clone credentials stay with it), then gives
the checkout to the step user, 0700, and makes that user a home with a
temporary directory in it, also 0700. The runner's own files (the log spool)
stay root's.

Each step's script is written to a file the shell reads (``bash -eo pipefail
<file>``) rather than passed as an argument: the kernel caps one argument at
128 KiB and a script may be up to the workflow limit of 1 MiB.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from runner.steps import StepUser


def step_user(name: str) -> StepUser:
    """The user steps run as; ValueError (a one-line reason) when that cannot be."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"cannot run steps as {name}: no such user") from None
    if entry.pw_uid == 0:
        raise ValueError(f"cannot run steps as {name}: it is root")
    if os.geteuid() != 0:
        raise ValueError(f"cannot run steps as {name}: the runner does not run as root")
    return StepUser(name, entry.pw_uid, entry.pw_gid)


def hand_over(workspace: Path, home: Path, user: StepUser) -> None:
    """Give the checkout to ``user`` (0700) and make its 0700 home with ``tmp/`` in it."""
    for path, dirs, files in os.walk(workspace):
        os.lchown(path, user.uid, user.gid)
        for name in (*dirs, *files):
            os.lchown(os.path.join(path, name), user.uid, user.gid)
    os.chmod(workspace, 0o700)
    for path in (home, home / "tmp"):
        path.mkdir(mode=0o700, exist_ok=True)
        os.lchown(path, user.uid, user.gid)
        os.chmod(path, 0o700)


def hand_over_tree(path: Path, user: StepUser) -> None:
    """Give a restored cache directory (and the folders above it in the home) to ``user``."""
    for top, dirs, files in os.walk(path):
        os.lchown(top, user.uid, user.gid)
        for name in (*dirs, *files):
            os.lchown(os.path.join(top, name), user.uid, user.gid)


def write_script(directory: Path, stem: str, text: str) -> Path:
    """``<directory>/<stem>.sh`` holding ``text``: readable by the step user, writable by nobody but us."""
    directory.mkdir(mode=0o711, exist_ok=True)
    path = directory / f"{stem}.sh"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, 0o644)  # whatever the umask
        out.write(text.encode())
    return path
