"""The one way the orchestrator runs an external command.

Every zonecfg/zoneadm/zfs/dladm call (and anything else) goes through
``run_command``: an argv list handed to ``asyncio.create_subprocess_exec`` (never
a shell string), a timeout after which the whole process group is killed,
stderr kept for the error, and one structured log line per call. Log lines go
through the global masker (common/log.py), so a secret in an argv never
reaches a log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.drivers.errors import CommandFailed, CommandTimeout, DriverError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command did. stdout/stderr are decoded leniently."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


async def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    input: bytes | None = None,  # noqa: A002 - mirrors subprocess.run
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``argv`` to completion and return its result.

    Raises ``CommandFailed`` (with stderr) when ``check`` and the exit status is
    not 0, ``CommandTimeout`` when it ran past ``timeout`` seconds (the process
    group is killed first), and ``CommandFailed`` with exit 127 when the program
    cannot be started at all. Cancellation kills the process group too.
    """
    args = tuple(str(a) for a in argv)
    if not args or isinstance(argv, (str, bytes)):
        raise TypeError("run_command takes a non-empty argv list, never a shell string")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            # Its own process group, so a timeout kills helpers it spawned too.
            start_new_session=True,
        )
    except OSError as err:
        _log(args, 127, time.monotonic() - started)
        raise CommandFailed(args, 127, f"cannot run {args[0]}: {err.strerror}") from err
    try:
        out, err_bytes = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        _kill_group(proc)
        out, err_bytes = await _drain(proc)
        _log(args, None, time.monotonic() - started)
        raise CommandTimeout(args, timeout, err_bytes.decode(errors="replace")) from None
    except asyncio.CancelledError:
        _kill_group(proc)
        await _drain(proc)
        raise
    duration = time.monotonic() - started
    assert proc.returncode is not None
    result = CommandResult(
        args,
        proc.returncode,
        out.decode(errors="replace"),
        err_bytes.decode(errors="replace"),
        duration,
    )
    _log(args, result.exit_code, duration)
    if check and result.exit_code != 0:
        raise CommandFailed(args, result.exit_code, result.stderr)
    return result


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _drain(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    # After SIGKILL the pipes close promptly unless a grandchild escaped the
    # group; bound the wait so a stuck pipe cannot hang the caller.
    try:
        return await asyncio.wait_for(proc.communicate(), 5.0)
    except (TimeoutError, DriverError):
        return b"", b""


def _log(argv: tuple[str, ...], exit_code: int | None, duration: float) -> None:
    log.info(
        "ran %s",
        argv[0],
        extra={
            "fields": {
                "argv": " ".join(argv),
                "exit": "timeout" if exit_code is None else exit_code,
                "duration_ms": round(duration * 1000, 1),
            }
        },
    )
