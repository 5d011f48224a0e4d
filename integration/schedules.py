"""Workflow schedules: registered from pushes, started on their ticks by exactly one replica.

    on schedule="0 3 * * *" branch="main"

A push to ``main`` whose workflow has that node registers it (``register``:
the branch's schedules become exactly those of the workflow at its head, so
removing the node removes the schedule). ``ScheduleRunner.run_due`` - called
on every pass of ``Integration.maintain`` by every replica - starts the runs
that are due: for each schedule the latest tick at or before now; if it is
later than the schedule's ``last_tick`` the replica tries to take it in the
store (one conditional UPDATE: one replica wins), reads the branch's head
from the forge and starts a build of it as if pushed, through the webhook
path's ``start_build`` (so a forge or queue failure after that defers and
retries it like any build). Ticks missed while no replica ran are not
replayed: only the latest counts, so an outage costs one run, not N.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from common.cron import parse_cron
from common.errors import SolsticeError
from common.schedule_row import ScheduleRow
from common.workflow import Workflow
from integration.errors import IntegrationError
from integration.events import BuildRequested, Forge, Repo
from integration.settings import IntegrationSettings
from integration.store import SeenStore, open_store
from integration.store.schedulesql import ScheduleRecord

log = logging.getLogger(__name__)

ORIGIN = "schedule"


class BranchHeads(Protocol):
    async def branch_head(self, repo: Repo, branch: str, deadline: float | None = None) -> str | None:
        """The commit at the head of ``branch``, or None when there is no such branch."""


StartBuild = Callable[[BuildRequested, str], Awaitable[object]]  # (build, the tick's key) -> its outcome


async def register(store: SeenStore, build: BuildRequested, workflow: Workflow | None,
                   now: float | None = None) -> int:
    """Record the schedules of ``build``'s branch from its ``workflow`` (None: the file is gone);
    how many it has. Pull requests and tags register nothing."""
    if build.pull_request or build.is_tag or not build.ref.startswith("refs/heads/"):
        return 0
    branch = build.ref.removeprefix("refs/heads/")
    at = time.time() if now is None else now
    crons = [s.cron for s in (workflow.schedules if workflow else ()) if s.branch == branch]
    ticks = [(cron, parse_cron(cron).latest(at) or at) for cron in crons]
    repo = build.repo
    await store.replace_schedules(repo.forge.value, repo.full_name, repo.clone_url, repo.installation_id, branch, ticks)
    return len(ticks)


class ScheduleRunner:
    """Starts due schedule ticks (``run_due``); several replicas may run it against one store."""

    def __init__(self, store: SeenStore, heads: Mapping[Forge, BranchHeads], start: StartBuild,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.heads = heads
        self.start = start
        self.clock = clock
        self.started = 0  # runs this replica started

    async def run_due(self) -> list[tuple[str, float]]:
        """Start every due tick this replica wins; the (schedule key, tick) of each."""
        now = self.clock()
        fired: list[tuple[str, float]] = []
        for record in await self.store.schedules():
            tick = parse_cron(record.cron).latest(now)
            if tick is None or tick <= record.last_tick:
                continue
            if not await self.store.take_tick(record.key, tick, now):
                continue  # another replica has it
            try:
                await self._start(record, tick)
            except (SolsticeError, ValueError) as err:
                log.warning("scheduled run not started; tried again on the next pass: %s", err,
                            extra={"fields": {"schedule": record.key}})
                await self.store.give_back(record.key, tick, record.last_tick, str(err), record.last_run_at)
                continue
            self.started += 1
            fired.append((record.key, tick))
        return fired

    async def _start(self, record: ScheduleRecord, tick: float) -> None:
        forge = Forge(record.forge)
        heads = self.heads.get(forge)
        if heads is None:
            raise IntegrationError(f"no API access to {forge.value} is configured, cannot read {record.branch}'s head")
        repo = Repo(forge, record.repo, record.clone_url, record.installation_id)
        sha = await heads.branch_head(repo, record.branch)
        if sha is None:
            raise IntegrationError(f"{record.repo} has no branch {record.branch!r}")
        build = BuildRequested(repo, f"refs/heads/{record.branch}", sha, f"{ORIGIN} {record.cron}")
        log.info("scheduled run", extra={"fields": {"schedule": record.key, "sha": sha,
                                                    "tick": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tick))}})
        await self.start(build, f"{ORIGIN}:{record.key}:{int(tick)}")


def _when(moment: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(moment)) if moment else "-"


async def schedule_lines(settings: IntegrationSettings, now: float | None = None) -> list[str]:
    """``solstice-integration schedules``: a table of the store's schedules."""
    store = open_store(settings.store)
    await store.open()
    try:
        records = await store.schedules()
    finally:
        await store.close()
    at = time.time() if now is None else now
    rows = [("FORGE", "REPOSITORY", "BRANCH", "SCHEDULE (UTC)", "LAST RUN", "NEXT", "LAST ERROR")]
    for r in records:
        rows.append((r.forge, r.repo, r.branch, r.cron, _when(r.last_run_at), _when(parse_cron(r.cron).next(at)),
                     r.last_error or "-"))
    if len(rows) == 1:
        return ["no schedules: a push of a workflow with on schedule=... branch=... to that branch registers one"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def schedule_rows(store: SeenStore) -> Callable[[], Awaitable[list[ScheduleRow]]]:
    """A reader of ``store``'s schedules for the dashboard's ``/schedules`` page."""
    async def read() -> list[ScheduleRow]:
        return [ScheduleRow(r.forge, r.repo, r.branch, r.cron, r.last_run_at, r.last_error)
                for r in await store.schedules()]
    return read
