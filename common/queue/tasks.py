"""Ending a set of owned tasks on shutdown: a grace period, then cancellation; pauses that end early on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def finish_or_cancel(tasks: Iterable[asyncio.Task[None]], grace: float) -> int:
    """Wait up to ``grace`` s for ``tasks``; cancel and await the rest. Returns how many were cancelled."""
    running = set(tasks)
    if not running:
        return 0
    _, pending = await asyncio.wait(running, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    return len(pending)


async def pause(delay: float, stop: asyncio.Event) -> None:
    """Sleep ``delay`` s, or less if ``stop`` is set meanwhile (a stopping consumer settles at once)."""
    if stop.is_set():
        return
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        pass
