"""The read side of out-of-tree results, for the dashboard and for ``GET /api/v1/results``.

``ExternalResults`` answers, per upstream commit or pull request, one
``DownstreamView`` per downstream that was dispatched: its dispatch (state
and times), its health, and the latest state of each of its jobs
(``ExternalJob``: status, conclusion, the server's times, the queue and
execution times from L3, the artifact link, the test counts); and, for the
global page, one ``DownstreamSummary`` per downstream (pass rate over a
window, last result, health). ``columns`` gives the per-repo matrix its
extra columns: per commit, per column name (``external / <downstream> /
<job>``), the latest ``ExternalJob``.

What the downstream said (job name, counts, artifact URL, its own times)
is its claim and is marked so (``ExternalJob.claimed_*``); what the server
established (which repository, its level, the upstream commit, the times it
saw) is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from integration.external.allowlist import RepoKey
from integration.external.allowlist_source import AllowlistSource
from integration.external.records import DispatchRecord, Health, ResultRecord, SuiteSummary
from integration.external.store import ExternalStore


@dataclass(frozen=True, slots=True)
class ExternalJob:
    """The latest state of one downstream job on one upstream commit."""

    downstream: str  # "github:acme/xpu-ci" (trusted: the token proved it)
    level: str  # "L2".."L4" when reported (trusted)
    sha: str  # the upstream commit (trusted: from the dispatch)
    pr_number: int
    job_id: str
    run_id: str
    run_attempt: int
    status: str  # in_progress / completed
    conclusion: str | None
    first_seen_at: float  # the server's clock
    completed_at: float | None
    queue_seconds: float | None  # dispatch -> first report; from L3 only
    execution_seconds: float | None  # first report -> completed; from L3 only
    claimed_job_name: str  # untrusted from here on
    claimed_artifact_url: str | None
    claimed_tests: SuiteSummary | None
    claimed_started_at: str | None
    claimed_completed_at: str | None

    @property
    def column(self) -> str:
        return f"external / {self.downstream.partition(':')[2]} / {self.claimed_job_name}"


@dataclass(frozen=True, slots=True)
class DispatchView:
    id: str
    state: str  # pending / sent / failed / dropped
    action: str
    attempts: int
    created_at: float
    sent_at: float | None
    finished_at: float | None
    last_error: str


@dataclass(frozen=True, slots=True)
class HealthView:
    """How the downstream's dispatches have gone (unhealthy: too many failed in a row)."""

    healthy: bool
    failures: int  # failed tries in a row
    unhealthy_since: float | None
    last_error: str
    last_success_at: float | None
    last_failure_at: float | None

    @classmethod
    def of(cls, health: Health) -> HealthView:
        return cls(health.healthy, health.failures, health.unhealthy_since, health.last_error,
                   health.last_success_at, health.last_failure_at)


@dataclass(frozen=True, slots=True)
class DownstreamView:
    """One downstream on one upstream commit or pull request."""

    downstream: str
    level: str | None  # its level now ("" when it left the allowlist; None when this server has no allowlist)
    health: HealthView
    dispatches: tuple[DispatchView, ...]
    jobs: tuple[ExternalJob, ...]


@dataclass(frozen=True, slots=True)
class DownstreamSummary:
    downstream: str
    level: str | None
    completed: int
    succeeded: int
    pass_rate: float | None  # succeeded / completed over the window; None without results
    last: ExternalJob | None  # its latest result, whenever it was
    health: HealthView


def job_of(record: ResultRecord) -> ExternalJob:
    shows_times = record.trusted.level.takes_reruns
    report = record.report
    return ExternalJob(
        downstream=str(record.key.downstream), level=record.trusted.level.name, sha=record.trusted.sha,
        pr_number=record.trusted.pr_number, job_id=record.key.job_id, run_id=record.key.run_id,
        run_attempt=record.key.run_attempt, status=record.status, conclusion=record.conclusion,
        first_seen_at=record.first_seen_at, completed_at=record.completed_seen_at,
        queue_seconds=record.queue_seconds if shows_times else None,
        execution_seconds=record.execution_seconds if shows_times else None,
        claimed_job_name=report.job_name, claimed_artifact_url=report.artifact_url, claimed_tests=report.tests,
        claimed_started_at=report.started_at, claimed_completed_at=report.completed_at,
    )


def latest_jobs(records: Iterable[ResultRecord]) -> list[ExternalJob]:
    """One job per (downstream, sha, job id): the highest attempt, then the last seen."""
    latest: dict[tuple[str, str, str], ResultRecord] = {}
    for record in records:
        slot = (str(record.key.downstream), record.trusted.sha, record.key.job_id)
        held = latest.get(slot)
        if held is None or (record.key.run_attempt, record.first_seen_at) > (held.key.run_attempt, held.first_seen_at):
            latest[slot] = record
    return [job_of(r) for r in sorted(latest.values(), key=lambda r: (str(r.key.downstream), r.key.job_id))]


def _dispatch_view(d: DispatchRecord) -> DispatchView:
    return DispatchView(d.id, d.state, d.action, d.attempts, d.created_at, d.sent_at, d.finished_at, d.last_error)


class ExternalResults:
    """Read-only queries over the ``ExternalStore`` (see the module docstring)."""

    def __init__(self, store: ExternalStore, allowlist: AllowlistSource | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.allowlist = allowlist
        self._clock = clock

    def _level(self, upstream: RepoKey | None, downstream: RepoKey) -> str | None:
        if self.allowlist is None:
            return None
        current = self.allowlist.current
        level = current.level(upstream, downstream) if upstream else current.best_level(downstream)
        return level.name if level else ""

    async def _views(self, upstream: RepoKey, dispatches: list[DispatchRecord],
                     records: list[ResultRecord]) -> list[DownstreamView]:
        jobs = latest_jobs(records)
        names = sorted({str(d.downstream) for d in dispatches} | {j.downstream for j in jobs})
        views = []
        for name in names:
            repo = RepoKey.parse(name)
            health = await self.store.health(repo)
            views.append(DownstreamView(
                downstream=name, level=self._level(upstream, repo), health=HealthView.of(health),
                dispatches=tuple(_dispatch_view(d) for d in dispatches if str(d.downstream) == name),
                jobs=tuple(j for j in jobs if j.downstream == name),
            ))
        return views

    async def for_commit(self, upstream: RepoKey, sha: str) -> list[DownstreamView]:
        """Every downstream dispatched for ``sha`` of ``upstream``, with its jobs' latest states."""
        return await self._views(upstream, await self.store.dispatches_of(upstream, sha=sha),
                                 await self.store.results_of_upstream(upstream, sha=sha))

    async def for_pull_request(self, upstream: RepoKey, number: int) -> list[DownstreamView]:
        """Every downstream dispatched for pull request ``number`` (all its head commits)."""
        return await self._views(upstream, await self.store.dispatches_of(upstream, pr_number=number),
                                 await self.store.results_of_upstream(upstream, pr_number=number))

    async def columns(self, upstream: RepoKey, shas: Sequence[str]) -> dict[str, dict[str, ExternalJob]]:
        """For the per-repo matrix: sha -> column name -> the latest job (only shas with results)."""
        cells: dict[str, dict[str, ExternalJob]] = {}
        for job in latest_jobs(await self.store.results_of_commits(upstream, shas)):
            cells.setdefault(job.sha, {})[job.column] = job
        return cells

    async def downstreams(self, window: float = 7 * 24 * 3600.0) -> list[DownstreamSummary]:
        """Every downstream with results in the window or a health record, best pass rate first."""
        totals = {str(repo): (done, ok, last) for repo, done, ok, last in
                  await self.store.downstream_totals(self._clock() - window)}
        health = {str(h.downstream): h for h in await self.store.all_health()}
        summaries = []
        for name in sorted(set(totals) | set(health)):
            repo = RepoKey.parse(name)
            done, ok, _ = totals.get(name, (0, 0, None))
            summaries.append(DownstreamSummary(name, self._level(None, repo), done, ok, ok / done if done else None,
                                               await self.last_result(repo),
                                               HealthView.of(health.get(name, Health(repo)))))
        return sorted(summaries, key=lambda s: (-(s.pass_rate if s.pass_rate is not None else -1), s.downstream))

    async def last_result(self, downstream: RepoKey) -> ExternalJob | None:
        records = await self.store.results_of_downstream(downstream, since=0, limit=1)
        return job_of(records[0]) if records else None
