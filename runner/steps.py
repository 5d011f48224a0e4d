"""Run one step: its own process group, its pipes into the log, its deadline.

A step is ``shell + [script file]`` (the script reaches the shell through a
file, never argv: the kernel caps one argument at 128 KiB) started in its own
process group, as ``user`` when the runner runs as root for a contained local
job. It stays in the runner's session, so whoever started the runner (the
local driver) still finds the step's processes by session id after the runner
itself died. A step timeout, the job's deadline or a cancellation stops the
group: SIGTERM, then SIGKILL after the grace period. Exit codes of signalled
steps follow the shell convention (128 + signal).

A step is over once its main process has exited and its pipes reached EOF -
or ``pipe_grace`` seconds passed: a background process that keeps stdout open
(``cmd &``, a daemon that never closes it) does not hold the job. asyncio's
``Process.wait()`` waits for the pipes as well, so the exit is watched through
the protocol's ``process_exited`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from asyncio.subprocess import Process, SubprocessStreamProtocol
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.logbatch import STDERR, STDOUT
from runner.sink import LogSink, pump

# After the step's own process exits, background children may still hold its
# pipes; read what they write for at most this long, then stop listening.
PIPE_GRACE = 5.0


@dataclass(frozen=True)
class StepRun:
    """How a step process ended."""

    exit_code: int
    duration: float
    stopped: str | None  # "timeout", "job-timeout", "cancelled", or None when it exited by itself
    pipes_held: bool = False  # its output was still open ``pipe_grace`` after it exited


@dataclass(frozen=True)
class StepUser:
    """Who steps run as when the runner is root (a contained local job): never root itself."""

    name: str
    uid: int
    gid: int


def script_argv(shell: Sequence[str], script: Path) -> list[str]:
    """``shell`` with the script file in place of ``-c <script>``: ``bash -eo pipefail -c`` runs
    ``bash -eo pipefail <file>``; a shell without a trailing ``-c`` gets the file appended."""
    prefix = list(shell)
    if prefix and prefix[-1] == "-c":
        prefix.pop()
    return [*prefix, str(script)]


class _StepProtocol(SubprocessStreamProtocol):
    """Resolves ``exited`` the moment the step's main process exits, pipes open or not."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


def resolve_workdir(checkout: Path, workdir: str) -> Path:
    """``checkout/workdir``, refusing anything that leaves the checkout."""
    root = checkout.resolve()
    path = (root / workdir).resolve() if workdir else root
    if path != root and root not in path.parents:
        raise ValueError(f"workdir {workdir!r} leads outside the checkout")
    if not path.is_dir():
        # Fails the step with a message; starting a process there would kill the runner.
        raise ValueError(f"workdir {workdir!r} is not a directory in the checkout")
    return path


async def run_step(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    sink: LogSink,
    index: int,
    timeout: float | None,
    job_deadline: float | None,
    cancelled: asyncio.Event,
    grace: float,
    user: StepUser | None = None,
    pipe_grace: float = PIPE_GRACE,
) -> StepRun:
    """Run the step to its end (or stop it); its output goes to ``sink``."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    account: dict[str, Any] = {"user": user.uid, "group": user.gid, "extra_groups": []} if user is not None else {}
    transport, protocol = await loop.subprocess_exec(
        lambda: _StepProtocol(1 << 20, loop), *argv,
        cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, process_group=0, **account,
    )
    proc = Process(transport, protocol, loop)
    exited = protocol.exited
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        asyncio.create_task(pump(proc.stdout, sink, index, STDOUT), name=f"step{index}-stdout"),
        asyncio.create_task(pump(proc.stderr, sink, index, STDERR), name=f"step{index}-stderr"),
    ]
    cancel_wait = asyncio.create_task(cancelled.wait(), name=f"step{index}-cancel")
    stopped: str | None = None
    held = False
    try:
        limit, why = _limit(started, timeout, job_deadline)
        waiting: set[asyncio.Future[Any]] = {exited, cancel_wait}
        done, _ = await asyncio.wait(waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if exited not in done:
            stopped = "cancelled" if cancel_wait in done else why
            await _stop_group(proc.pid, exited, grace)
        # Anything still running in the group is a leftover of this step.
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.gather(*pumps), pipe_grace)
        except TimeoutError:
            held = True
    finally:
        for task in (*pumps, cancel_wait):
            task.cancel()
        await asyncio.gather(*pumps, cancel_wait, return_exceptions=True)
        if not exited.done():  # we are being cancelled ourselves
            _signal_group(proc.pid, signal.SIGKILL)
            await asyncio.shield(exited)
        transport.close()  # stop reading pipes a leftover process may still hold
    code = proc.returncode
    assert code is not None
    return StepRun(128 - code if code < 0 else code, time.monotonic() - started, stopped, held)


def _limit(started: float, timeout: float | None, deadline: float | None) -> tuple[float | None, str]:
    step_end = started + timeout if timeout else None
    if deadline is not None and (step_end is None or deadline < step_end):
        return max(0.0, deadline - time.monotonic()), "job-timeout"
    if step_end is None:
        return None, "timeout"
    return max(0.0, step_end - time.monotonic()), "timeout"


async def _stop_group(pgid: int, exited: asyncio.Future[None], grace: float) -> None:
    _signal_group(pgid, signal.SIGTERM)
    done, _ = await asyncio.wait({exited}, timeout=grace)
    if not done:
        _signal_group(pgid, signal.SIGKILL)
        await asyncio.wait({exited})


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
