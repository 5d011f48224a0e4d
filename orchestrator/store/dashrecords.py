"""Typed rows of the dashboard's read model (``dashsql``), each built by ``from_row``.

Times are timezone-aware UTC datetimes, as in ``records``; durations are seconds.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.store.records import Row, _required_time, _time
from orchestrator.store.states import JobState

# Upper edges (seconds) of the duration histogram buckets; the last bucket holds the rest.
# The SQL of migration 006 and ``dashsql.bucket_sql`` spell out the same edges.
DURATION_EDGES: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 18000)
BUCKETS = len(DURATION_EDGES) + 1


def bucket_of(seconds: float) -> int:
    """The histogram bucket a duration falls in (the same rule as the SQL)."""
    return bisect.bisect_right(DURATION_EDGES, seconds)


@dataclass(frozen=True)
class Histogram:
    """Counts of durations per bucket (``DURATION_EDGES``)."""

    counts: tuple[int, ...] = (0,) * BUCKETS

    @property
    def total(self) -> int:
        return sum(self.counts)

    def add(self, bucket: int, n: int) -> Histogram:
        counts = list(self.counts)
        counts[min(max(bucket, 0), BUCKETS - 1)] += n
        return Histogram(tuple(counts))

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile (linear within its bucket); None when empty.

        Good to a bucket's width: enough to tell 40 s from 4 min, which is what
        a summary page shows.
        """
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, n in enumerate(self.counts):
            if n and seen + n >= rank:
                low = DURATION_EDGES[index - 1] if index > 0 else 0.0
                high = DURATION_EDGES[index] if index < len(DURATION_EDGES) else low * 2
                return low + (high - low) * max(0.0, rank - seen) / n
            seen += n
        return float(DURATION_EDGES[-1])


@dataclass(frozen=True)
class FailureNote:
    """Where a failed attempt went wrong: its failing step and the first line that reads like an error."""

    step: int  # the step's index; -1 before any step
    step_name: str
    line_seq: int  # the line's log sequence (``#L<seq>`` on the job page); 0 = no line
    line: str  # as stored (masked), without colour codes, at most ``MAX_NOTE`` characters

    @classmethod
    def from_row(cls, row: Row) -> FailureNote | None:
        if row["note_step"] is None:
            return None
        return cls(int(row["note_step"]), row["note_step_name"], int(row["note_line_seq"]), row["note_line"])


MAX_NOTE = 300


@dataclass(frozen=True)
class TestCounts:
    """An attempt's test counts (its JUnit reports), as the matrix and pull-request pages show them."""

    __test__ = False  # not a pytest test class

    passed: int
    failed: int
    skipped: int
    errors: int

    @classmethod
    def from_row(cls, row: Row) -> TestCounts | None:
        if row["tests_passed"] is None:
            return None
        return cls(int(row["tests_passed"]), int(row["tests_failed"]), int(row["tests_skipped"]),
                   int(row["tests_errors"]))

    def text(self) -> str:
        """``"41 passed, 2 failed"``: the nonzero counts."""
        parts = [f"{n} {what}" for n, what in ((self.passed, "passed"), (self.failed, "failed"),
                                               (self.errors, "errors" if self.errors != 1 else "error"),
                                               (self.skipped, "skipped")) if n]
        return ", ".join(parts) or "no tests"


@dataclass(frozen=True)
class JobRow:
    """A job with one of its attempts (the current one unless said otherwise), as the pages list jobs."""

    seq: int
    job_id: str
    run_id: str
    key: str
    name: str
    runs_on: str
    forge: str
    repo: str
    ref: str
    sha: str
    pull_request: int
    attempt: int
    state: JobState
    host: str
    reason: str
    queued_at: datetime
    started_at: datetime | None  # claimed by a host
    running_at: datetime | None
    finished_at: datetime | None
    note: FailureNote | None
    tests: TestCounts | None = None  # what the attempt's JUnit reports counted, when it had any

    @property
    def queue_seconds(self) -> float | None:
        """queued -> running; None while (or if never) running."""
        if self.running_at is None:
            return None
        return (self.running_at - self.queued_at).total_seconds()

    @property
    def run_seconds(self) -> float | None:
        """running -> finished; None unless both happened."""
        if self.running_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.running_at).total_seconds()

    @classmethod
    def from_row(cls, row: Row) -> JobRow:
        return cls(
            seq=int(row["seq"]), job_id=row["job_id"], run_id=row["run_id"], key=row["key"], name=row["name"],
            runs_on=row["runs_on"], forge=row["forge"], repo=row["repo"], ref=row["ref"], sha=row["sha"],
            pull_request=int(row["pull_request"]), attempt=int(row["attempt"]), state=JobState(row["state"]),
            host=row["host"], reason=row["reason"], queued_at=_required_time(row["queued_at"]),
            started_at=_time(row["started_at"]), running_at=_time(row["running_at"]),
            finished_at=_time(row["finished_at"]), note=FailureNote.from_row(row), tests=TestCounts.from_row(row),
        )


@dataclass(frozen=True)
class RepoSummary:
    """One repository over a window of days: finished attempts by state, what runs now, durations."""

    forge: str
    repo: str
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    errored: int = 0
    queued: int = 0  # now (not windowed)
    running: int = 0  # provisioning or running now
    queue_time: Histogram = Histogram()
    run_time: Histogram = Histogram()

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.errored

    @property
    def pass_rate(self) -> float | None:
        """succeeded / (succeeded + failed): the code's health. Errored (the system's fault) and
        cancelled attempts say nothing about the code; None when nothing passed or failed."""
        judged = self.succeeded + self.failed
        return None if judged == 0 else self.succeeded / judged


@dataclass(frozen=True)
class RefRow:
    """A branch (or a pull request's head ref) of a repository, with the seq of its newest job."""

    ref: str
    pull_request: int
    last_seq: int

    @classmethod
    def from_row(cls, row: Row) -> RefRow:
        return cls(row["ref"], int(row["pull_request"]), int(row["last_seq"]))


@dataclass(frozen=True)
class CommitRow:
    """A commit built on a ref; ``first_seq`` orders the matrix's rows (and pages them)."""

    sha: str
    first_seq: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> CommitRow:
        return cls(row["sha"], int(row["first_seq"]), _required_time(row["created_at"]))


@dataclass(frozen=True)
class LabelLoad:
    """Unfinished attempts of one ``runs_on`` label in one state (the metrics' queue gauges)."""

    label: str
    state: JobState
    count: int
    oldest: datetime  # the oldest one's queued_at

    @classmethod
    def from_row(cls, row: Row) -> LabelLoad:
        return cls(row["runs_on"], JobState(row["state"]), int(row["n"]), _required_time(row["oldest"]))


def merge_histograms(rows: Sequence[Row]) -> dict[tuple[str, str, int], Histogram]:
    """(forge, repo, kind) -> its histogram, from ``(forge, repo, kind, bucket, n)`` rows."""
    found: dict[tuple[str, str, int], Histogram] = {}
    for row in rows:
        key = (row["forge"], row["repo"], int(row["kind"]))
        found[key] = found.get(key, Histogram()).add(int(row["bucket"]), int(row["n"]))
    return found
