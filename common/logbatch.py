"""Log lines and the columnar ``LogBatch`` that carries them (runner.proto).

A batch holds runs of consecutive lines (same step, stream and read time)
whose contents are joined by ``\\n``; sequences are implicit (first_sequence
plus the line's position). The runner builds batches, the orchestrator's log
store trims, masks and stores them, and both read them back with
``iter_lines``. Content is raw bytes everywhere: only a display decodes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from common.errors import SolsticeError
from common.masking import Masker
from common.rpc import admin_pb2, runner_pb2

STDOUT = admin_pb2.LOG_STREAM_STDOUT
STDERR = admin_pb2.LOG_STREAM_STDERR
SYSTEM = admin_pb2.LOG_STREAM_SYSTEM
JOB_STEP = -1  # the ``step`` of lines that belong to no step (checkout, runner notes)
B = TypeVar("B", runner_pb2.LogBatch, admin_pb2.LogPage)


class BatchError(SolsticeError):
    """A log batch is malformed (line counts do not match its data)."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One stored line (or chunk of a long line) of a job's log."""

    sequence: int
    step: int
    stream: int  # admin_pb2.LogStream value
    content: bytes  # without the newline; may be any bytes
    continuation: bool  # continues the previous line (a long line was split)
    at: float  # unix time the runner read it

    def text(self) -> str:
        """The content for display: invalid UTF-8 becomes U+FFFD, never an error."""
        return self.content.decode("utf-8", errors="replace")


def line_count(batch: runner_pb2.LogBatch) -> int:
    return sum(run.lines for run in batch.runs)


def output_bytes(batch: runner_pb2.LogBatch) -> int:
    """Bytes of output ``batch`` stands for: its lines and one newline each (what a log limit counts)."""
    return sum(len(run.data) + run.lines for run in batch.runs)


def check(batch: runner_pb2.LogBatch) -> int:
    """Validate the runs' line counts; return the number of lines."""
    total = 0
    for run in batch.runs:
        held = run.data.count(b"\n") + 1
        if run.lines < 1 or held != run.lines:
            raise BatchError(
                f"log batch from sequence {batch.first_sequence}: a run says {run.lines} "
                f"lines but its data holds {held}"
            )
        total += run.lines
    if total and batch.first_sequence < 1:
        raise BatchError("log sequences start at 1")
    return total


def iter_lines(batch: runner_pb2.LogBatch | admin_pb2.LogPage) -> Iterator[LogLine]:
    """Every line of ``batch`` with its sequence."""
    seq = batch.first_sequence
    cont = set(batch.continuations)
    for run in batch.runs:
        for content in run.data.split(b"\n"):
            yield LogLine(seq, run.step, run.stream, content, seq in cont, run.at)
            seq += 1


def drop_first(batch: B, count: int) -> B:
    """A copy of ``batch`` without its first ``count`` lines (already stored, or before where a
    reader starts). ``batch`` is a ``LogBatch`` or an ``admin_pb2.LogPage`` (the same fields);
    its other fields are copied as they are."""
    out = type(batch)()
    out.CopyFrom(batch)
    del out.runs[:]
    del out.continuations[:]
    out.first_sequence = batch.first_sequence + count
    skip = count
    for run in batch.runs:
        if skip >= run.lines:
            skip -= run.lines
            continue
        if skip:
            data = run.data.split(b"\n", skip)[skip]
            out.runs.add(step=run.step, stream=run.stream, at=run.at, lines=run.lines - skip, data=data)
            skip = 0
        else:
            out.runs.append(run)
    out.continuations.extend(s for s in batch.continuations if s >= out.first_sequence)
    return out


def secret_values(secrets: Iterable[str]) -> list[str]:
    """What to mask for a job's secrets.

    Lines are masked one at a time, so a multi-line secret (a PEM key) is also
    registered line by line: each of its lines is masked where it appears.
    """
    values = [s for s in secrets if s]
    parts = [p.strip() for s in values if "\n" in s for p in s.splitlines()]
    return [*values, *(p for p in parts if p)]


def job_masker(secrets: Iterable[str]) -> Masker:
    """A Masker for a job's secret values (see ``secret_values``)."""
    return Masker(secret_values(secrets))


def mask_data(masker: Masker, data: bytes) -> bytes:
    """Mask the ``\\n``-joined lines of one run, keeping the line count.

    One regex pass over the joined bytes is far cheaper than one per line; if
    a match spanned a newline (a multi-line secret) the count would change,
    so then each line is masked on its own.
    """
    if not masker:
        return data
    masked = masker.mask_bytes(data)
    if masked.count(b"\n") != data.count(b"\n"):
        masked = b"\n".join(masker.mask_bytes(part) for part in data.split(b"\n"))
    return masked


def mask_batch(masker: Masker, batch: runner_pb2.LogBatch) -> runner_pb2.LogBatch:
    """Mask every run of ``batch`` in place and return it."""
    if masker:
        for run in batch.runs:
            run.data = mask_data(masker, run.data)
    return batch
