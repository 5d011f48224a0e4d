"""Run one step: its own process group, its pipes into the log, its deadline.

A step is ``shell + [script]`` started in its own process group so it and
everything it spawns can be stopped together. It stays in the runner's
session, so whoever started the runner (the local driver) still finds the
step's processes by session id after the runner itself died. A step timeout, the job's
deadline or a cancellation stops the group: SIGTERM, then SIGKILL after the
grace period. Exit codes of signalled steps follow the shell convention
(128 + signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.logbatch import STDERR, STDOUT
from runner.sink import LogSink, pump

# After the step's own process exits, background children may still hold its
# pipes; read what they write for at most this long, then stop listening.
DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class StepRun:
    """How a step process ended."""

    exit_code: int
    duration: float
    stopped: str | None  # "timeout", "job-timeout", "cancelled", or None when it exited by itself


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
) -> StepRun:
    """Run the step to its end (or stop it); its output goes to ``sink``."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        process_group=0,
        limit=1 << 20,
    )
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        asyncio.create_task(pump(proc.stdout, sink, index, STDOUT), name=f"step{index}-stdout"),
        asyncio.create_task(pump(proc.stderr, sink, index, STDERR), name=f"step{index}-stderr"),
    ]
    exited = asyncio.create_task(proc.wait(), name=f"step{index}-wait")
    cancel_wait = asyncio.create_task(cancelled.wait(), name=f"step{index}-cancel")
    stopped: str | None = None
    try:
        limit, why = _limit(started, timeout, job_deadline)
        done, _ = await asyncio.wait({exited, cancel_wait}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if exited not in done:
            stopped = "cancelled" if cancel_wait in done else why
            await _stop_group(proc, exited, grace)
        # Anything still running in the group is a leftover of this step.
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pumps), DRAIN_SECONDS)
    finally:
        for task in (*pumps, exited, cancel_wait):
            task.cancel()
        await asyncio.gather(*pumps, exited, cancel_wait, return_exceptions=True)
        if proc.returncode is None:  # we are being cancelled ourselves
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    code = proc.returncode
    assert code is not None
    return StepRun(128 - code if code < 0 else code, time.monotonic() - started, stopped)


def _limit(started: float, timeout: float | None, deadline: float | None) -> tuple[float | None, str]:
    step_end = started + timeout if timeout else None
    if deadline is not None and (step_end is None or deadline < step_end):
        return max(0.0, deadline - time.monotonic()), "job-timeout"
    if step_end is None:
        return None, "timeout"
    return max(0.0, step_end - time.monotonic()), "timeout"


async def _stop_group(proc: asyncio.subprocess.Process, exited: asyncio.Task, grace: float) -> None:  # type: ignore[type-arg]
    _signal_group(proc.pid, signal.SIGTERM)
    done, _ = await asyncio.wait({exited}, timeout=grace)
    if not done:
        _signal_group(proc.pid, signal.SIGKILL)
        await asyncio.wait({exited})


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
