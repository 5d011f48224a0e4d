"""``GreennessRecorder``: commits in (from the build path), job outcomes in (from the event queue), verdicts out.

The webhook service (and the poller, through it) asks ``seen`` before a
build - the dedupe on (queue, head) that outlives the webhook claims - and
``prepare`` before it publishes: the commit is recorded with the jobs it
expects (required or not, weights, projects), and with incremental
selection the jobs of unaffected projects are dropped from the publish and
recorded as carried from the last green commit. The event handler records
each terminal job event (a later attempt replaces an earlier one: a re-run
re-judges the commit, nothing is ever final) and judges the commit again;
``sweep`` judges commits that waited too long ("incomplete").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from common.queue.disposition import Disposition
from common.rpc import jobs_pb2
from common.workflow import Workflow
from integration.errors import StoreError
from integration.events import BuildRequested, Repo
from integration.external.read import job_of
from integration.external.records import ResultRecord
from integration.greenness.model import SUCCEEDED, TERMINAL_STATES, WHOLE, JobRecord, QueueKey, Transition
from integration.greenness.selection import Changes, Plan, full, plan
from integration.greenness.settings import GreennessSettings
from integration.greenness.store import SqlGreennessStore
from integration.greenness.store.sql import Outcome

log = logging.getLogger(__name__)

EXTERNAL_PREFIX = "external:"
STORE_PAUSE = (0.5, 30.0)  # first and longest pause before an event is put back while the store fails


class ChangeSource(Protocol):
    async def changes(self, repo: Repo, base: str, head: str, deadline: float | None = None) -> Changes:
        """The paths changed from ``base`` to ``head``, and whether ``base`` is an ancestor of ``head``."""


def queue_of(build: BuildRequested) -> QueueKey:
    return QueueKey(build.repo.forge.value, build.repo.full_name, build.ref)


class GreennessRecorder:
    """See the module docstring. ``changes``: per forge name, how to ask for changed paths (incremental)."""

    def __init__(self, settings: GreennessSettings, store: SqlGreennessStore,
                 changes: Mapping[str, ChangeSource] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.changes = dict(changes or {})
        self.clock = clock
        self.transitions = 0  # made since start
        self._store_failures = 0

    def tracks(self, build: BuildRequested) -> bool:
        return not build.pull_request and self.settings.tracks(build.repo.forge.value, build.repo.full_name,
                                                               build.ref)

    def hooks_for(self, queue: str, project: str) -> list[str]:
        return [name for name, hook in sorted(self.settings.hooks.items()) if hook.follows(queue, project)]

    async def seen(self, build: BuildRequested) -> bool:
        """True when the head already reached its queue: the same head again is not a new build."""
        return self.tracks(build) and await self.store.knows(queue_of(build), build.sha)

    async def prepare(self, build: BuildRequested, run_id: str, workflow: Workflow,
                      requests: Sequence[jobs_pb2.JobRequest], deadline: float | None = None
                      ) -> list[jobs_pb2.JobRequest]:
        """Record the commit and its expected jobs; the requests to publish (fewer when some are carried).

        Called again for the same build (a deferred retry) it changes nothing and returns the same selection.
        """
        if not self.tracks(build):
            return list(requests)
        queue = queue_of(build)
        if await self.store.knows(queue, build.sha):
            expected = {j.job: j for j in await self.store.jobs_of(queue, build.sha)}
            return [r for r in requests if not expected.get(r.key, JobRecord(r.key, True, 1, ())).carried_from]
        forge, repo = queue.forge, queue.repo
        projects = self.settings.projects_of(forge, repo)
        chosen = await self._plan(build, queue, [j.id for j in workflow.jobs], deadline)
        base_jobs = {j.job: j for j in await self.store.jobs_of(queue, chosen.base)} if chosen.carry else {}
        qs = self.settings.queue_settings(forge, repo, build.ref)
        records = []
        for job in workflow.jobs:
            owners = tuple(sorted(name for name, p in projects.items() if job.id in p.jobs))
            record = JobRecord(job.id, getattr(job, "required", True), float(qs.weights.get(job.id, 1.0)), owners)
            carried = base_jobs.get(job.id)
            if job.id in chosen.carry and carried is not None and carried.reported:
                record = JobRecord(job.id, record.required, record.weight, owners, carried.state, carried.reason,
                                   carried.attempt, carried.carried_from or chosen.base)
            records.append(record)
        for column in qs.external_required:
            records.append(JobRecord(EXTERNAL_PREFIX + column, True, float(qs.weights.get(column, 1.0)), ()))
        now = self.clock()
        if await self.store.add_commit(queue, build.sha, run_id, records, chosen.why, now):
            log.info("commit reached its queue: %s", chosen.why,
                     extra={"fields": {"queue": queue.text, "sha": build.sha, "jobs": len(records)}})
            await self._settle(queue, build.sha)
        carried_keys = {r.job for r in records if r.carried_from}
        return [r for r in requests if r.key not in carried_keys]

    async def _plan(self, build: BuildRequested, queue: QueueKey, keys: list[str], deadline: float | None) -> Plan:
        projects = self.settings.projects_of(queue.forge, queue.repo)
        if not projects:
            return full("no projects are configured")
        source = self.changes.get(queue.forge)
        if source is None:
            return full(f"changed paths cannot be read from {queue.forge}")
        state = await self.store.scope_state(queue, WHOLE)
        base = state.last_green.sha if state.last_green else ""
        if base == build.sha:
            return full("the head is the last green commit")
        changes = await source.changes(build.repo, base, build.sha, deadline) if base else None
        return plan(projects, keys, base, changes, build.sha)

    async def record(self, queue: QueueKey, sha: str, job: str, run_id: str, attempt: int, state: str,
                     reason: str = "") -> list[Transition]:
        """One outcome, recorded and judged in one transaction; the transitions it made (none when it changed
        nothing: an older attempt, another run, a job the commit does not expect)."""
        return await self._settle(queue, sha, Outcome(job, run_id, attempt, state, reason))

    async def record_external(self, forge: str, repo: str, sha: str, column: str, state: str,
                              reason: str = "") -> int:
        """An out-of-tree result of ``sha`` in every queue of the repository that requires ``column``."""
        made = 0
        for queue in await self.store.queues(forge, repo):
            run_id = await self.store.run_of(queue, sha)
            if run_id:
                made += len(await self.record(queue, sha, EXTERNAL_PREFIX + column, run_id, 1 << 30, state, reason))
        return made

    async def external_result(self, record: ResultRecord) -> None:
        """A completed out-of-tree result (``LocalSink.completed``): counted where config requires its column."""
        column = job_of(record).column
        state = SUCCEEDED if record.conclusion == "success" else "failed"
        upstream = record.trusted.upstream
        why = "" if state == SUCCEEDED else f"concluded {record.conclusion or 'without a conclusion'}"
        await self.record_external(upstream.forge.value, upstream.name, record.trusted.sha, column, state, why)

    async def _settle(self, queue: QueueKey, sha: str, outcome: Outcome | None = None) -> list[Transition]:
        made = await self.store.settle(queue, sha, self.clock(), self.settings.incomplete_after, self.hooks_for,
                                       outcome) or []
        for t in made:
            self.transitions += 1
            log.info("queue transition: %s at %s (%s)", t.state, t.commit[:12], t.reason,
                     extra={"fields": {"queue": queue.text, "project": t.project, "transition": t.number,
                                       "last_green": t.last_green}})
        return made

    async def sweep(self, limit: int = 100) -> int:
        """Judge commits that waited past ``incomplete_after``; how many were."""
        due = await self.store.pending_before(self.clock() - self.settings.incomplete_after, limit)
        for queue, sha in due:
            await self._settle(queue, sha)
        return len(due)

    async def handle(self, event: jobs_pb2.JobEvent) -> Disposition:
        """The handler of the greenness event queue: terminal job events of tracked queues."""
        state = TERMINAL_STATES.get(event.state)
        if event.HasField("step") or state is None or event.source != jobs_pb2.JOB_SOURCE_FORGE:
            return Disposition.ACK
        c = event.checkout
        if c.pull_request or not self.settings.tracks(c.forge, c.repo, c.ref):
            return Disposition.ACK
        reason = "" if state == SUCCEEDED else event.reason
        try:
            await self.record(QueueKey(c.forge, c.repo, c.ref), c.sha, event.key, event.run_id, event.attempt,
                              state, reason)
        except StoreError as err:
            self._store_failures += 1
            first, longest = STORE_PAUSE
            pause = min(longest, first * 2 ** (self._store_failures - 1))
            log.warning("the greenness store failed, the event is retried in %.1fs: %s", pause, err,
                        extra={"fields": {"job_id": event.job_id}})
            await asyncio.sleep(pause)
            return Disposition.REQUEUE
        self._store_failures = 0
        return Disposition.ACK
