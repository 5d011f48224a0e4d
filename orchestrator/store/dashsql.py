"""The dashboard's read model in SQL, mixed into ``SqlStore`` (migration 009).

Every query here is a few index lookups whatever the number of jobs: the
per-day counts, duration histograms, refs, commits and failures are kept by
the triggers of migration 009 as the jobs are written; the rest reads one
repository's ref, commit or pull request through an index, or the unfinished
attempts (bounded by capacity and queue depth). ``rebuild_dashboard`` derives
every dash_* table again from the jobs (the migration's data step, and a
repair for an operator).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from common.rpc import jobs_pb2
from orchestrator.store.backend import Tx
from orchestrator.store.dashrecords import (
    DURATION_EDGES,
    MAX_NOTE,
    CommitRow,
    FailureNote,
    Histogram,
    JobRow,
    LabelLoad,
    RefRow,
    RepoSummary,
    merge_histograms,
)
from orchestrator.store.records import AttemptRecord, Row
from orchestrator.store.sqltext import UNFINISHED_SQL
from orchestrator.store.states import JobState

log = logging.getLogger(__name__)

DAY = 86400.0
QUEUE_TIME, RUN_TIME = 0, 1  # dash_durations.kind
MAX_SHAS = 100  # commits of one matrix page
MAX_IDS = 500  # jobs whose attempts one call reads
BACKFILL_BATCH = 2000

# A job with one of its attempts (alias a) and that attempt's failure note: JobRow.from_row.
_JOB_ROW = (
    "SELECT j.seq, j.job_id, j.run_id, j.key, j.name, j.runs_on, j.forge, j.repo, j.ref, j.sha, j.pull_request,"
    " a.attempt, a.state, a.host, a.reason, a.queued_at, a.started_at, a.running_at, a.finished_at,"
    " n.step AS note_step, n.step_name AS note_step_name, n.line_seq AS note_line_seq, n.line AS note_line,"
    " t.passed AS tests_passed, t.failed AS tests_failed, t.skipped AS tests_skipped, t.errors AS tests_errors"
)
# The attempt's test counts (migration test_reports), for _JOB_ROW.
_TESTS = " LEFT JOIN test_reports t ON t.job_id = a.job_id AND t.attempt = a.attempt"
_CURRENT = (
    f"{_JOB_ROW} FROM jobs j JOIN attempts a ON a.job_id = j.job_id AND a.attempt = j.attempt"
    " LEFT JOIN failure_notes n ON n.job_id = a.job_id AND n.attempt = a.attempt" + _TESTS
)


def day_sql(dialect: str, seconds: str) -> str:
    """The UTC day number of an epoch-seconds expression (the triggers' ``day``)."""
    if dialect == "postgres":
        return f"CAST(FLOOR(({seconds}) / 86400) AS INTEGER)"
    return f"CAST(({seconds}) / 86400 AS INTEGER)"  # SQLite: truncation is floor for times after 1970


def bucket_sql(seconds: str) -> str:
    """The histogram bucket of a duration expression (the triggers' CASE, from ``DURATION_EDGES``)."""
    whens = " ".join(f"WHEN {seconds} < {edge:g} THEN {i}" for i, edge in enumerate(DURATION_EDGES))
    return f"CASE {whens} ELSE {len(DURATION_EDGES)} END"


def rebuild_statements(dialect: str) -> list[str]:
    """Statements that derive every dash_* table from jobs and attempts again (one transaction)."""
    finished_day = day_sql(dialect, "a.finished_at")
    as_int = "CAST({} AS INTEGER)" if dialect == "postgres" else "({})"
    counts = ", ".join(f"SUM({as_int.format(f'a.state = {int(s)}')})" for s in
                       (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ERRORED))
    finished = "a.state IN (4, 5, 6, 7) AND a.finished_at IS NOT NULL"
    durations = " UNION ALL ".join(
        f"SELECT {finished_day} AS day, j.forge AS forge, j.repo AS repo, {kind} AS kind, {bucket_sql(d)} AS bucket"
        f" FROM attempts a JOIN jobs j ON j.job_id = a.job_id WHERE {finished} AND a.running_at IS NOT NULL"
        for kind, d in ((QUEUE_TIME, "(a.running_at - a.queued_at)"), (RUN_TIME, "(a.finished_at - a.running_at)")))
    return [
        *(f"DELETE FROM {table}" for table in ("dash_refs", "dash_commits", "dash_days", "dash_durations",
                                               "dash_failures")),
        "INSERT INTO dash_refs (forge, repo, ref, pull_request, last_seq)"
        " SELECT forge, repo, ref, MAX(pull_request), MAX(seq) FROM jobs GROUP BY forge, repo, ref",
        "INSERT INTO dash_commits (forge, repo, ref, sha, first_seq, last_seq, created_at)"
        " SELECT forge, repo, ref, sha, MIN(seq), MAX(seq), MIN(created_at) FROM jobs GROUP BY forge, repo, ref, sha",
        "INSERT INTO dash_days (day, forge, repo, succeeded, failed, cancelled, errored)"
        f" SELECT {finished_day}, j.forge, j.repo, {counts} FROM attempts a JOIN jobs j ON j.job_id = a.job_id"
        f" WHERE {finished} GROUP BY {finished_day}, j.forge, j.repo",
        "INSERT INTO dash_durations (day, forge, repo, kind, bucket, n)"
        f" SELECT day, forge, repo, kind, bucket, COUNT(*) FROM ({durations}) AS x"
        " GROUP BY day, forge, repo, kind, bucket",
        "INSERT INTO dash_failures (job_id, attempt, forge, repo, state, finished_at)"
        " SELECT a.job_id, a.attempt, j.forge, j.repo, a.state, a.finished_at FROM attempts a"
        " JOIN jobs j ON j.job_id = a.job_id WHERE a.state IN (5, 7) AND a.finished_at IS NOT NULL",
    ]


async def backfill(tx: Tx, dialect: str) -> None:
    """Migration 006's data step: fill ``jobs.forge``/``pull_request`` of the jobs stored before it
    from their requests (SQL cannot read protobuf), then derive the dash_* tables."""
    after, filled = 0, 0
    while True:
        rows = await tx.fetch(
            "SELECT seq, request FROM jobs WHERE forge = '' AND seq > $1 ORDER BY seq LIMIT $2", after, BACKFILL_BATCH)
        if not rows:
            break
        for row in rows:
            checkout = jobs_pb2.JobRequest.FromString(bytes(row["request"])).checkout
            if checkout.forge or checkout.pull_request:
                await tx.execute("UPDATE jobs SET forge = $2, pull_request = $3 WHERE seq = $1",
                                 int(row["seq"]), checkout.forge, int(checkout.pull_request))
                filled += 1
        after = int(rows[-1]["seq"])
    for statement in rebuild_statements(dialect):
        await tx.execute(statement)
    if filled:
        log.info("dashboard: filled in the forge of %d stored jobs", filled)


class DashboardReads(abc.ABC):
    """What the dashboard reads (and the one thing the node writes for it): part of ``Store``."""

    @abc.abstractmethod
    async def put_failure_note(self, job_id: str, attempt: int, note: FailureNote) -> None:
        """Keep where attempt ``attempt`` of ``job_id`` failed (replacing a note it had)."""

    @abc.abstractmethod
    async def failure_note(self, job_id: str, attempt: int) -> FailureNote | None:
        """The attempt's failure note, or None."""

    @abc.abstractmethod
    async def repo_summaries(self, since: float) -> list[RepoSummary]:
        """Every repository with an attempt finished since the UTC day of epoch ``since``, or with
        jobs unfinished now; by forge and name."""

    @abc.abstractmethod
    async def latest_failures(self, forge: str, repo: str, since: float, limit: int = 3) -> list[JobRow]:
        """The repository's newest failed or errored attempts finished at or after ``since``, newest first."""

    @abc.abstractmethod
    async def repo_refs(self, forge: str, repo: str, limit: int = 50) -> list[RefRow]:
        """The repository's refs with jobs, most recently active first."""

    @abc.abstractmethod
    async def ref_commits(self, forge: str, repo: str, ref: str, before_seq: int | None = None,
                          limit: int = 25) -> list[CommitRow]:
        """Commits built on ``ref``, newest first (by first job), older than ``before_seq`` when given."""

    @abc.abstractmethod
    async def commit_jobs(self, forge: str, repo: str, ref: str, shas: Sequence[str]) -> list[JobRow]:
        """Every job of those commits on ``ref`` with its current attempt, oldest first."""

    @abc.abstractmethod
    async def pull_jobs(self, forge: str, repo: str, number: int, limit: int = 500) -> list[JobRow]:
        """The pull request's jobs with their current attempts, newest first."""

    @abc.abstractmethod
    async def attempts_of(self, job_ids: Sequence[str]) -> Mapping[str, list[AttemptRecord]]:
        """Every attempt of each job (at most ``MAX_IDS`` jobs), first first."""

    @abc.abstractmethod
    async def job_row(self, job_id: str) -> JobRow | None:
        """The job with its current attempt and note, or None."""

    @abc.abstractmethod
    async def label_loads(self) -> list[LabelLoad]:
        """Unfinished attempts by ``runs_on`` label and state, with the oldest one's queue time."""

    @abc.abstractmethod
    async def rebuild_dashboard(self) -> None:
        """Derive the dashboard's tables from the jobs again (they are kept up to date as jobs are
        written; this repairs them, e.g. after rows were changed by hand)."""


class DashboardSql(DashboardReads):
    """``DashboardReads`` in SQL; needs ``_run``, ``_tx`` and ``backend`` from ``SqlStore``."""

    if TYPE_CHECKING:  # SqlStore provides these
        async def _run(self, sql: str, *args: object) -> Sequence[Row]: ...  # provided by SqlStore

        def _tx(self, write: bool = True) -> AbstractAsyncContextManager[Tx]: ...  # provided by SqlStore

    async def put_failure_note(self, job_id: str, attempt: int, note: FailureNote) -> None:
        await self._run(
            "INSERT INTO failure_notes (job_id, attempt, step, step_name, line_seq, line)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, attempt) DO UPDATE SET step = excluded.step,"
            " step_name = excluded.step_name, line_seq = excluded.line_seq, line = excluded.line",
            job_id, attempt, note.step, note.step_name, note.line_seq, note.line[:MAX_NOTE],
        )

    async def failure_note(self, job_id: str, attempt: int) -> FailureNote | None:
        rows = await self._run(
            "SELECT step AS note_step, step_name AS note_step_name, line_seq AS note_line_seq, line AS note_line"
            " FROM failure_notes WHERE job_id = $1 AND attempt = $2", job_id, attempt)
        return FailureNote.from_row(rows[0]) if rows else None

    async def repo_summaries(self, since: float) -> list[RepoSummary]:
        first_day = int(since // DAY)
        counts = await self._run(
            "SELECT forge, repo, SUM(succeeded) AS succeeded, SUM(failed) AS failed, SUM(cancelled) AS cancelled,"
            " SUM(errored) AS errored FROM dash_days WHERE day >= $1 GROUP BY forge, repo", first_day)
        histograms = merge_histograms(await self._run(
            "SELECT forge, repo, kind, bucket, SUM(n) AS n FROM dash_durations WHERE day >= $1"
            " GROUP BY forge, repo, kind, bucket", first_day))
        active = await self._run(
            "SELECT j.forge, j.repo, a.state, COUNT(*) AS n FROM attempts a JOIN jobs j ON j.job_id = a.job_id"
            f" WHERE a.state IN {UNFINISHED_SQL} GROUP BY j.forge, j.repo, a.state")
        now: dict[tuple[str, str], list[int]] = {}
        for row in active:
            slot = now.setdefault((row["forge"], row["repo"]), [0, 0])
            slot[0 if JobState(row["state"]) is JobState.QUEUED else 1] += int(row["n"])
        found: dict[tuple[str, str], RepoSummary] = {}
        for row in counts:
            key = (row["forge"], row["repo"])
            found[key] = RepoSummary(*key, succeeded=int(row["succeeded"]), failed=int(row["failed"]),
                                     cancelled=int(row["cancelled"]), errored=int(row["errored"]))
        for key in now.keys() - found.keys():
            found[key] = RepoSummary(*key)
        summaries = []
        for key, summary in sorted(found.items()):
            queued, running = now.get(key, [0, 0])
            summaries.append(RepoSummary(
                summary.forge, summary.repo, summary.succeeded, summary.failed, summary.cancelled, summary.errored,
                queued, running, histograms.get((*key, QUEUE_TIME), Histogram()),
                histograms.get((*key, RUN_TIME), Histogram())))
        return summaries

    async def latest_failures(self, forge: str, repo: str, since: float, limit: int = 3) -> list[JobRow]:
        rows = await self._run(
            f"{_JOB_ROW} FROM dash_failures f JOIN jobs j ON j.job_id = f.job_id"
            " JOIN attempts a ON a.job_id = f.job_id AND a.attempt = f.attempt"
            " LEFT JOIN failure_notes n ON n.job_id = a.job_id AND n.attempt = a.attempt" + _TESTS +
            " WHERE f.forge = $1 AND f.repo = $2 AND f.finished_at >= $3 ORDER BY f.finished_at DESC LIMIT $4",
            forge, repo, float(since), limit)
        return [JobRow.from_row(row) for row in rows]

    async def repo_refs(self, forge: str, repo: str, limit: int = 50) -> list[RefRow]:
        rows = await self._run(
            "SELECT ref, pull_request, last_seq FROM dash_refs WHERE forge = $1 AND repo = $2"
            " ORDER BY last_seq DESC LIMIT $3", forge, repo, limit)
        return [RefRow.from_row(row) for row in rows]

    async def ref_commits(self, forge: str, repo: str, ref: str, before_seq: int | None = None,
                          limit: int = 25) -> list[CommitRow]:
        before = (1 << 62) if before_seq is None else before_seq
        rows = await self._run(
            "SELECT sha, first_seq, created_at FROM dash_commits WHERE forge = $1 AND repo = $2 AND ref = $3"
            " AND first_seq < $4 ORDER BY first_seq DESC LIMIT $5", forge, repo, ref, before, limit)
        return [CommitRow.from_row(row) for row in rows]

    async def commit_jobs(self, forge: str, repo: str, ref: str, shas: Sequence[str]) -> list[JobRow]:
        shas = list(dict.fromkeys(shas))[:MAX_SHAS]
        if not shas:
            return []
        wanted = ", ".join(f"${n}" for n in range(4, 4 + len(shas)))
        rows = await self._run(
            f"{_CURRENT} WHERE j.forge = $1 AND j.repo = $2 AND j.ref = $3 AND j.sha IN ({wanted}) ORDER BY j.seq",
            forge, repo, ref, *shas)
        return [JobRow.from_row(row) for row in rows]

    async def pull_jobs(self, forge: str, repo: str, number: int, limit: int = 500) -> list[JobRow]:
        if number < 1:
            return []
        rows = await self._run(
            f"{_CURRENT} WHERE j.forge = $1 AND j.repo = $2 AND j.pull_request = $3 ORDER BY j.seq DESC LIMIT $4",
            forge, repo, number, limit)
        return [JobRow.from_row(row) for row in rows]

    async def attempts_of(self, job_ids: Sequence[str]) -> Mapping[str, list[AttemptRecord]]:
        ids = list(dict.fromkeys(job_ids))[:MAX_IDS]
        if not ids:
            return {}
        wanted = ", ".join(f"${n}" for n in range(1, 1 + len(ids)))
        rows = await self._run(f"SELECT * FROM attempts WHERE job_id IN ({wanted}) ORDER BY job_id, attempt", *ids)
        found: dict[str, list[AttemptRecord]] = {}
        for row in rows:
            found.setdefault(row["job_id"], []).append(AttemptRecord.from_row(row))
        return found

    async def job_row(self, job_id: str) -> JobRow | None:
        rows = await self._run(f"{_CURRENT} WHERE j.job_id = $1", job_id)
        return JobRow.from_row(rows[0]) if rows else None

    async def label_loads(self) -> list[LabelLoad]:
        rows = await self._run(
            "SELECT j.runs_on, a.state, COUNT(*) AS n, MIN(a.queued_at) AS oldest FROM attempts a"
            f" JOIN jobs j ON j.job_id = a.job_id WHERE a.state IN {UNFINISHED_SQL} GROUP BY j.runs_on, a.state")
        return [LabelLoad.from_row(row) for row in rows]

    async def rebuild_dashboard(self) -> None:
        dialect = self.backend.dialect  # type: ignore[attr-defined]
        async with self._tx() as tx:
            for statement in rebuild_statements(dialect):
                await tx.execute(statement)
