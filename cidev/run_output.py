"""What ``cidev run`` prints: one line per event as it happens, and a summary table.

Every line starts with ``[<job>]`` so the output of jobs running side by side
stays readable (and greppable); step banners and the step summaries the
runner writes into the log are replaced by our own start/finish lines with
durations. Everything printed goes through the run's ``Masker`` first:
the runner and the log store mask secrets already, this is the last guard.

Log lines arrive a page at a time (``LogPage``: runs of lines) and leave a
block at a time: each run is masked with one regex pass and prefixed with
one bytes replace (``common.logtext``), and the block is written with one
call - a million-line step costs milliseconds here, not seconds. On a
terminal, control bytes in them are escaped (``common.escape``) unless
``cidev run --raw``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from cidev.run_engine import JobResult
from common.escape import escape_block
from common.logbatch import JOB_STEP, LogLine, iter_lines, mask_data
from common.logtext import TextBlocks
from common.masking import Masker
from common.rpc import admin_pb2, jobs_pb2

Echo = Callable[[str], None]
WriteBytes = Callable[[bytes], None]  # writes a block as it is (it ends with a newline)

_STEP_STATES = {
    jobs_pb2.STEP_STATE_SUCCEEDED: "succeeded",
    jobs_pb2.STEP_STATE_FAILED: "failed",
    jobs_pb2.STEP_STATE_SKIPPED: "skipped",
    jobs_pb2.STEP_STATE_CANCELLED: "cancelled",
}
# The runner closes each step's log with one of these (runner.agent._summary); our
# finish line says the same. Any other closing line (a refused workdir) is shown.
MAX_FAILURES_SHOWN = 10  # failing tests listed per job; the job page and the forge show more
_RUNNER_SUMMARY = re.compile(r"^(exited|timed out|stopped: job timed out|cancelled) with exit code ")


def job_state_name(state: int) -> str:
    """``succeeded``, ``failed``, ... for a ``jobs_pb2.JobState`` value."""
    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def seconds(value: float) -> str:
    """A duration for people: ``0.42s``, ``12.3s``, ``2m05s``."""
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(round(value)), 60)
    return f"{minutes}m{rest:02d}s"


class _JobView:
    """What has been printed of one job, to keep step lines in log order."""

    def __init__(self, request: jobs_pb2.JobRequest) -> None:
        self.total = len(request.steps)
        self.names = {i: step.name for i, step in enumerate(request.steps)}
        self.started: set[int] = set()
        self.banner_seen: set[int] = set()
        self.log_done: set[int] = set()  # the log has moved past the step
        self.results: dict[int, jobs_pb2.StepResult] = {}
        self.finished: set[int] = set()


class LinePrinter:
    """A ``Reporter`` that prints plain lines (works on a terminal, in a pipe, in CI logs).

    Step results arrive over one RPC and log lines over another, so a
    step's "finished" line is held back until the log has moved past that
    step: every line of a step appears between its start and finish lines.
    """

    def __init__(self, echo: Echo, masker: Masker, write: WriteBytes | None = None, escape: bool = False) -> None:
        self.echo = echo
        self.masker = masker
        self.write = write or (lambda block: echo(block.decode("utf-8", "replace").removesuffix("\n")))
        self.escape = escape
        self._jobs: dict[str, _JobView] = {}

    def _say(self, request: jobs_pb2.JobRequest, text: str) -> None:
        self.echo(self.masker.mask(f"[{request.key}] {text}"))

    def _view(self, request: jobs_pb2.JobRequest) -> _JobView:
        view = self._jobs.get(request.key)
        if view is None:
            view = self._jobs[request.key] = _JobView(request)
        return view

    def _title(self, view: _JobView, index: int) -> str:
        return f"step {index + 1}/{view.total} {view.names.get(index, '')}".rstrip()

    def _start(self, request: jobs_pb2.JobRequest, view: _JobView, index: int) -> None:
        for earlier in sorted(view.started - view.log_done):
            if earlier < index:
                view.log_done.add(earlier)
                self._finish(request, view, earlier)
        if index not in view.started:
            view.started.add(index)
            self._say(request, f"{self._title(view, index)}: started")

    def _finish(self, request: jobs_pb2.JobRequest, view: _JobView, index: int, force: bool = False) -> None:
        result = view.results.get(index)
        if result is None or index in view.finished or not (force or index in view.log_done):
            return
        view.finished.add(index)
        state = _STEP_STATES.get(result.state, "finished")
        if result.state == jobs_pb2.STEP_STATE_SKIPPED:
            self._say(request, f"{self._title(view, index)}: skipped")
            return
        detail = f" (exit code {result.exit_code})" if result.state == jobs_pb2.STEP_STATE_FAILED else ""
        self._say(request, f"{self._title(view, index)}: {state}{detail} in {seconds(result.duration_seconds)}")

    def job_started(self, request: jobs_pb2.JobRequest) -> None:
        self._view(request)
        self._say(request, f"job started ({len(request.steps)} steps)")

    def step(self, request: jobs_pb2.JobRequest, result: jobs_pb2.StepResult) -> None:
        view = self._view(request)
        if result.name:
            view.names[result.index] = result.name
        if result.state != jobs_pb2.STEP_STATE_RUNNING:
            view.results[result.index] = result
            self._finish(request, view, result.index)

    def page(self, request: jobs_pb2.JobRequest, page: admin_pb2.LogPage) -> None:
        """The lines of ``page``: step banners and summaries one by one (they start and end
        steps), everything else a block per run of consecutive lines."""
        view = self._view(request)
        key = request.key.encode()
        text = {False: TextBlocks(b"[" + key + b"] | ", b""), True: TextBlocks(b"[" + key + b"] * ", b"")}
        mask = (lambda data: mask_data(self.masker, data)) if self.masker else None
        out: list[bytes] = []
        conts = set(page.continuations)
        seq = page.first_sequence
        for run in page.runs:
            system = run.stream == admin_pb2.LOG_STREAM_SYSTEM
            if run.step != JOB_STEP:
                if system or run.step not in view.started or any(e < run.step for e in view.started - view.log_done):
                    self._flush(out)  # what the step lines say goes in between
                    if system:
                        one = admin_pb2.LogPage(first_sequence=seq, runs=[run], continuations=conts)
                        for line in iter_lines(one):
                            self.line(request, line)
                        seq += run.lines
                        continue
                    self._start(request, view, run.step)
            blocks = text[system]
            blocks.mask = mask
            blocks.run(out, run, seq, conts)
            out.append(blocks.finish())
            seq += run.lines
        self._flush(out)

    def _flush(self, out: list[bytes]) -> None:
        if not out:
            return
        block = b"".join(out)
        out.clear()
        self.write(escape_block(block) if self.escape else block)

    def line(self, request: jobs_pb2.JobRequest, line: LogLine) -> None:
        """One line of the log (a step's banner or summary among them)."""
        view = self._view(request)
        system = line.stream == admin_pb2.LOG_STREAM_SYSTEM
        if line.step != JOB_STEP:
            self._start(request, view, line.step)
            if system:
                # The runner's banner opens a step and its summary closes it;
                # our own start/finish lines say the same, with the duration.
                if line.step in view.banner_seen and not line.text().startswith("cancelling"):
                    if not _RUNNER_SUMMARY.match(line.text()):
                        self._say(request, f"* {line.text()}")
                    view.log_done.add(line.step)
                    self._finish(request, view, line.step)
                view.banner_seen.add(line.step)
                return
        self._say(request, f"{'*' if system else '|'} {line.text()}")

    def job_finished(self, request: jobs_pb2.JobRequest, result: JobResult) -> None:
        view = self._view(request)
        for step in result.steps:
            view.results.setdefault(step.index, step)
        for index in sorted(view.results):
            self._finish(request, view, index, force=True)
        if result.tests is not None:
            self._say(request, f"tests: {result.tests.counts_text()}")
            for failure in result.tests.failures[:MAX_FAILURES_SHOWN]:
                where = f" ({failure.file}:{failure.line})" if failure.file and failure.line else ""
                message = failure.message.splitlines()[0] if failure.message else ""
                self._say(request, f"{'ERROR' if failure.error else 'FAILED'} {failure.title}{where}"
                                   + (f": {message}" if message else ""))
        reason = f": {result.reason}" if result.reason else ""
        timing = f" in {seconds(result.duration)}" if result.duration else ""
        self._say(request, f"job {job_state_name(result.state)}{timing}{reason}")


def summary_lines(results: Sequence[JobResult], masker: Masker) -> list[str]:
    """The table printed at the end: one row per job, then the overall verdict."""
    rows = [("JOB", "RESULT", "DURATION", "STEPS", "REASON")]
    for result in results:
        ok = sum(1 for s in result.steps if s.state == jobs_pb2.STEP_STATE_SUCCEEDED)
        rows.append((
            result.key, job_state_name(result.state), seconds(result.duration) if result.duration else "-",
            f"{ok}/{len(result.steps)}" if result.steps else "-", masker.mask(result.reason),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows]
    passed = sum(1 for r in results if r.succeeded)
    verdict = ("all jobs succeeded" if passed == len(results)
               else f"{len(results) - passed} of {len(results)} jobs did not succeed")
    return [line.rstrip() for line in lines] + [verdict]
