"""Stage-by-stage progress of a long build, and its closing summary.

On a terminal a bar is redrawn every second (stage, elapsed time); into a
pipe or a log each stage is one line when it starts and one when it ends,
so CI logs stay readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import TextIO

BAR = 24


class Progress:
    """Reports ``total`` stages on ``out``; use ``async with progress.stage(title):``."""

    def __init__(self, total: int, out: TextIO | None = None, tty: bool | None = None) -> None:
        self.total = total
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.done = 0
        self.started = time.monotonic()
        self.timings: list[tuple[str, float]] = []

    def _bar(self, title: str, elapsed: float) -> str:
        filled = BAR * self.done // max(self.total, 1)
        return f"\r[{'#' * filled}{'.' * (BAR - filled)}] {self.done}/{self.total} {title} ({elapsed:.0f}s)\x1b[K"

    @contextlib.asynccontextmanager
    async def stage(self, title: str) -> AsyncIterator[None]:
        began = time.monotonic()
        if self.tty:
            ticker = asyncio.create_task(self._tick(title, began))
        else:
            ticker = None
            self.out.write(f"[{self.done + 1}/{self.total}] {title} ...\n")
            self.out.flush()
        try:
            yield
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
        spent = time.monotonic() - began
        self.done += 1
        self.timings.append((title, spent))
        if self.tty:
            self.out.write(self._bar(title, spent) + "\n")
        else:
            self.out.write(f"[{self.done}/{self.total}] {title}: done in {spent:.1f}s\n")
        self.out.flush()

    async def _tick(self, title: str, began: float) -> None:
        while True:
            self.out.write(self._bar(title, time.monotonic() - began))
            self.out.flush()
            await asyncio.sleep(1.0)

    def summary(self, rows: list[tuple[str, str]]) -> None:
        width = max(len(k) for k, _ in rows)
        self.out.write("\n")
        for key, value in rows:
            self.out.write(f"  {key.ljust(width)}  {value}\n")
        self.out.flush()
