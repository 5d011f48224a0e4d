"""State on disk that only its owner may read: directories 0700, files 0600.

The orchestrator's state (SQLite databases, queue and event files, job logs,
sockets, key files) holds job data and credentials; another local user must
not read it. ``private_dir``/``private_file`` create with the right mode or
tighten an existing one that this user owns (someone else's is left alone: the
open that follows fails or succeeds on its own terms).
"""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import SolsticeError


class FileModeError(SolsticeError):
    """A state directory or file cannot be made private."""


def _tighten(path: Path, mode: int) -> None:
    info = path.stat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o777 != mode:
        os.chmod(path, mode)


def private_dir(path: Path) -> Path:
    """``path`` (and missing parents) as a directory only its owner can enter (0700)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _tighten(path, 0o700)
    except OSError as err:
        raise FileModeError(f"cannot create the private directory {path}: {err.strerror}") from err
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read or write (0600), created empty if missing.

    SQLite creates its ``-wal`` and ``-shm`` files with the database's mode, so a
    database made private before it is first opened stays private whole.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        _tighten(path, 0o600)
    except OSError as err:
        raise FileModeError(f"cannot create the private file {path}: {err.strerror}") from err
    return path
