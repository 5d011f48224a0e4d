"""Workflow schedules in the integration's store: what is scheduled, and the lease on each tick.

A row per (forge, repository, branch, cron expression), written when a push to
the branch shows the workflow's ``on schedule=...`` nodes (``replace_schedules``).
``last_tick`` is the last tick a replica took: ``take_tick`` moves it forward
in one conditional UPDATE, so of any number of replicas that see a tick due
at once exactly one gets the row changed - and starts the run. A replica that
took a tick and could not start its run gives it back (``give_back``) so the
next pass tries again. A new schedule starts at the latest tick before it was
registered: it first runs at its next tick, not for the past.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

from integration.errors import StoreError

SCHEDULE_SCHEMA = """
CREATE TABLE IF NOT EXISTS integration_schedules (
    key TEXT PRIMARY KEY,
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    clone_url TEXT NOT NULL,
    installation_id BIGINT NOT NULL,
    branch TEXT NOT NULL,
    cron TEXT NOT NULL,
    last_tick {real} NOT NULL,
    last_run_at {real} NOT NULL,
    last_error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS integration_schedules_branch ON integration_schedules (forge, repo, branch);
"""
_COLUMNS = "key, forge, repo, clone_url, installation_id, branch, cron, last_tick, last_run_at, last_error"


def schedule_key(forge: str, repo: str, branch: str, cron: str) -> str:
    """The row's key: one schedule of one branch of one repository."""
    return f"{forge}:{repo}:{branch}:{cron}"


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """One registered schedule and how far it got."""

    key: str
    forge: str
    repo: str  # owner/name
    clone_url: str
    installation_id: int
    branch: str
    cron: str
    last_tick: float  # unix time of the last tick taken (or the latest tick before registration)
    last_run_at: float  # when a run was last started; 0 = never
    last_error: str  # why the last start failed ("" = it did not)

    @classmethod
    def from_record(cls, row: tuple[object, ...]) -> Self:
        key, forge, repo, url, inst, branch, cron, tick, run_at, error = row
        return cls(str(key), str(forge), str(repo), str(url), int(inst),  # type: ignore[call-overload]
                   str(branch), str(cron), float(tick), float(run_at), str(error))  # type: ignore[arg-type]


class _Tx(Protocol):
    async def execute(self, sql: str, args: Sequence[object]) -> int: ...


class ScheduleSql:
    """The schedule operations of ``SqlSeenStore``; needs its ``_run``, ``_rows``, ``_transaction``, ``errors``."""

    errors: tuple[type[BaseException], ...]

    if TYPE_CHECKING:  # SqlSeenStore provides these
        async def _run(self, what: str, sql: str, *args: object) -> int: ...

        async def _rows(self, what: str, sql: str, *args: object) -> list[tuple[object, ...]]: ...

        def _transaction(self) -> AbstractAsyncContextManager[_Tx]: ...

    async def replace_schedules(self, forge: str, repo: str, clone_url: str, installation_id: int, branch: str,
                                ticks: Sequence[tuple[str, float]]) -> None:
        """Make ``branch``'s schedules exactly ``ticks`` (cron, latest tick before now) in one transaction;
        a schedule kept keeps its ``last_tick``."""
        keep = [schedule_key(forge, repo, branch, cron) for cron, _ in ticks]
        try:
            async with self._transaction() as tx:
                marks = ", ".join("?" for _ in keep)
                await tx.execute(
                    "DELETE FROM integration_schedules WHERE forge = ? AND repo = ? AND branch = ?"
                    + (f" AND key NOT IN ({marks})" if keep else ""), (forge, repo, branch, *keep))
                for key, (cron, tick) in zip(keep, ticks, strict=True):
                    await tx.execute(
                        f"INSERT INTO integration_schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '') "
                        "ON CONFLICT (key) DO UPDATE SET clone_url = excluded.clone_url, "
                        "installation_id = excluded.installation_id",
                        (key, forge, repo, clone_url, installation_id, branch, cron, tick))
        except self.errors as err:
            raise StoreError(f"cannot record the schedules of {repo} {branch}: {err}") from err

    async def schedules(self) -> list[ScheduleRecord]:
        """Every registered schedule, by repository, branch and expression."""
        rows = await self._rows("cannot read the schedules",
                                f"SELECT {_COLUMNS} FROM integration_schedules ORDER BY forge, repo, branch, cron")
        return [ScheduleRecord.from_record(row) for row in rows]

    async def take_tick(self, key: str, tick: float, now: float) -> bool:
        """True for the one caller that moves ``key`` to ``tick`` (it starts the run); False when the
        tick (or a later one) was taken already or the schedule is gone."""
        changed = await self._run(
            f"cannot take the tick of schedule {key}",
            "UPDATE integration_schedules SET last_tick = ?, last_run_at = ?, last_error = '' "
            "WHERE key = ? AND last_tick < ?", tick, now, key, tick)
        return changed == 1

    async def give_back(self, key: str, tick: float, previous: float, error: str, previous_run_at: float = 0.0) -> None:
        """The run of ``tick`` could not start (``error``): due again, unless a later tick was taken since;
        the last run is the one before (``previous_run_at``) again."""
        await self._run(
            f"cannot give back the tick of schedule {key}",
            "UPDATE integration_schedules SET last_tick = ?, last_run_at = ?, last_error = ? "
            "WHERE key = ? AND last_tick = ?",
            previous, previous_run_at, error[:500], key, tick)
