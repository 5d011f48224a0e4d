"""Where a failed attempt went wrong, for the dashboard: its failing step and the first line of
that step that reads like an error (else the step's last line), as stored (masked).

Written by the node that ran the attempt once its log is closed (``note_failure``), so
the summary page and the matrix can point at ``/jobs/<id>#L<seq>`` without reading logs.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence

from common.ansi import strip_ansi
from common.junit import TestSummary
from common.logbatch import JOB_STEP, SYSTEM
from common.rpc import jobs_pb2
from orchestrator.logstore import LogNotFound, LogStore, LogStoreError
from orchestrator.store import FailureNote, Store, StoreError

log = logging.getLogger(__name__)

# What compilers, test runners and shells print when something breaks.
ERROR_LINE = re.compile(
    r"(?i)(\berror\b|\berror:|\bfail(ed|ure|s)?\b|\bfatal\b|\bpanic(ked)?\b|\bexception\b|traceback"
    r"|\bassert(ion)?\b|\bnot found\b|\bdenied\b)")
MAX_LINES = 200_000  # lines looked at; a huge log's note is its step's last line seen
MAX_TEXT = 300


def failing_step(steps: Sequence[jobs_pb2.StepResult]) -> jobs_pb2.StepResult | None:
    return next((s for s in sorted(steps, key=lambda s: s.index) if s.state == jobs_pb2.STEP_STATE_FAILED), None)


async def find_note(logstore: LogStore, job_id: str, attempt: int,
                    steps: Sequence[jobs_pb2.StepResult]) -> FailureNote:
    """The note of a failed attempt (``line_seq`` 0 when no line of the step was logged)."""
    step = failing_step(steps)
    index, name = (step.index, step.name) if step is not None else (JOB_STEP, "")
    try:
        joblog = await logstore.open(job_id, attempt, create=False)
    except LogNotFound:
        return FailureNote(index, name, 0, "")
    last: tuple[int, str] = (0, "")
    seen = 0
    async with contextlib.aclosing(joblog.follow(1)) as lines:
        async for line in lines:
            seen += 1
            if seen > MAX_LINES:
                break
            if line.continuation or (step is not None and line.step != index) or line.stream == SYSTEM:
                continue
            text = strip_ansi(line.text()).strip()
            if not text:
                continue
            if ERROR_LINE.search(text):
                return FailureNote(index, name, line.sequence, text[:MAX_TEXT])
            last = (line.sequence, text)
    return FailureNote(index, name, last[0], last[1][:MAX_TEXT])


async def note_failure(store: Store, logstore: LogStore, job_id: str, attempt: int,
                       steps: Sequence[jobs_pb2.StepResult]) -> None:
    """Find and store the note of a failed attempt; a failure is logged, never raised (it is a hint)."""
    try:
        note = await find_note(logstore, job_id, attempt, steps)
        await store.put_failure_note(job_id, attempt, note)
    except (LogStoreError, StoreError) as err:
        log.warning("cannot note where the job failed: %s", err, extra={"fields": {"job": job_id}})


async def note_tests(store: Store, job_id: str, attempt: int, tests: TestSummary) -> None:
    """Store what the attempt's test reports said; a failure is logged, never raised (the
    forge has the summary from the job's event, the job page shows none)."""
    try:
        await store.put_test_summary(job_id, attempt, tests)
    except StoreError as err:
        log.warning("cannot store the test summary: %s", err, extra={"fields": {"job": job_id}})
