"""``cidev run`` on a terminal: the same lines as ``LinePrinter``, plus a status line kept at the bottom.

The status line says how many jobs are done and, for each running job, its
current step and how long the job has been running. It is redrawn in place
(carriage return, erase to end of line) after every printed line and once a
second, cut to the terminal's width so it never wraps (a wrapped line could
not be erased), and erased for good before the summary. Off a terminal
(pipes, CI logs) ``cidev run`` prints the plain lines only.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from cidev.run_engine import JobResult
from cidev.run_output import LinePrinter, WriteBytes, seconds
from common.logbatch import JOB_STEP
from common.masking import Masker
from common.rpc import admin_pb2, jobs_pb2

Write = Callable[[str], None]  # writes text as it is: no newline added, flushed

ERASE = "\r\x1b[K"  # back to column 0, erase to the end of the line


@dataclass
class _Running:
    started: float
    steps: tuple[str, ...]
    step: int = -1  # index of the step the job is in; -1 before the first


class ProgressDisplay:
    """A ``Reporter`` for a terminal; ``close()`` erases the status line (call it once the run ends)."""

    def __init__(self, write: Write, masker: Masker, jobs: int,
                 clock: Callable[[], float] = time.monotonic,
                 width: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
                 write_bytes: WriteBytes | None = None, escape: bool = True) -> None:
        self._write = write
        self._write_bytes = write_bytes or (lambda block: write(block.decode("utf-8", "replace")))
        self._masker = masker
        self._jobs = jobs
        self._clock = clock
        self._width = width
        self._done = 0
        self._running: dict[str, _Running] = {}
        self._shown = False
        self._closed = False
        self._lines = LinePrinter(self._print, masker, self._print_block, escape)

    def status(self) -> str:
        """The status line as it would be drawn now (before cutting to the width)."""
        now = self._clock()
        parts = [f"cidev: {self._done}/{self._jobs} jobs done"]
        for key, job in self._running.items():
            where = ""
            if 0 <= job.step < len(job.steps):
                where = f" step {job.step + 1}/{len(job.steps)} {job.steps[job.step]}".rstrip()
            parts.append(f"{key}:{where} {seconds(now - job.started)}")
        return self._masker.mask(" | ".join(parts))

    def redraw(self) -> None:
        """Draw the status line again (the elapsed times move on)."""
        if self._closed:
            return
        width = max(self._width() - 1, 10)  # the last column would wrap on some terminals
        text = self.status()
        if len(text) > width:
            text = text[: width - 1] + "…"
        self._write(ERASE + text)
        self._shown = True

    async def tick(self, every: float = 1.0) -> None:
        """Redraw every ``every`` s until cancelled (an owned task of the run)."""
        while True:
            await asyncio.sleep(every)
            self.redraw()

    def close(self) -> None:
        """Erase the status line; nothing is drawn after this."""
        if self._shown:
            self._write(ERASE)
        self._closed = True
        self._shown = False

    def _print(self, line: str) -> None:
        self._write((ERASE if self._shown else "") + line + "\n")
        self._shown = False
        self.redraw()

    def _print_block(self, block: bytes) -> None:
        self._write_bytes((ERASE.encode() if self._shown else b"") + block)
        self._shown = False
        self.redraw()

    # -- Reporter ---------------------------------------------------------------

    def job_started(self, request: jobs_pb2.JobRequest) -> None:
        names = tuple(step.name for step in request.steps)
        self._running[request.key] = _Running(self._clock(), names)
        self._lines.job_started(request)

    def step(self, request: jobs_pb2.JobRequest, result: jobs_pb2.StepResult) -> None:
        moved = self._at_step(request, result.index)
        self._lines.step(request, result)
        if moved:
            self.redraw()  # a step that starts prints nothing of its own

    def page(self, request: jobs_pb2.JobRequest, page: admin_pb2.LogPage) -> None:
        for run in page.runs:
            if run.step != JOB_STEP:
                self._at_step(request, run.step)
        self._lines.page(request, page)

    def job_finished(self, request: jobs_pb2.JobRequest, result: JobResult) -> None:
        self._running.pop(request.key, None)
        self._done += 1
        self._lines.job_finished(request, result)

    def _at_step(self, request: jobs_pb2.JobRequest, index: int) -> bool:
        job = self._running.get(request.key)
        if job is None or index <= job.step:
            return False
        job.step = index
        return True
