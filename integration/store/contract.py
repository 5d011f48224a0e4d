"""The ``SeenStore`` interface both back-ends implement (one contract test-suite runs on both).

Claims: ``claim(kind, key, ttl)`` atomically records ``key`` and returns True
the first time; while the claim lives (``ttl`` seconds) it returns False.
Kinds used: ``delivery`` (forge delivery ids) and ``build`` (forge, repo, ref,
head sha). A webhook that fails half-way ``release``s its claims so the
forge's redelivery is processed. ``purge_expired`` deletes dead claims.

Builds in progress (the publish outbox): ``start_build`` takes the delivery
and build claims AND keeps the build (with its run id, from which the job
ids derive) as a deferred build leased to the caller - in one transaction.
A process that dies before it published leaves a row that comes due when
the lease ends, and ``take_due`` (of any replica) finishes it under the same
ids; the claims can never outlive the build they stand for. A build whose
workflow could not be read or whose job requests could not be published
(forge API or queue down) is ``reschedule``d the same way - GitHub and
Forgejo do not redeliver a failed webhook by themselves. ``take_due`` leases
due ones (several replicas never take the same one at once); the caller
then ``forget_deferred``s or ``reschedule``s each.

Report records: the last state reported to the forge for one job attempt,
with the forge's id for it (GitHub check-run id); they make reporting
idempotent and keep a late or duplicate event from moving a check backwards
(``save_report`` never lowers a rank). ``lock_report`` is the per-job lock
that holds across replicas sharing the store: a lease, so a holder that died
gives it up when it ends.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from integration.store.schedulesql import ScheduleRecord


class BuildStart(enum.Enum):
    """What ``start_build`` did."""

    STARTED = "started"  # both claims taken, the build kept (leased to the caller)
    DUPLICATE_DELIVERY = "duplicate delivery"  # nothing changed
    DUPLICATE_BUILD = "duplicate build"  # the delivery is claimed, the build was taken before


@dataclass(frozen=True, slots=True)
class ReportRecord:
    job_id: str
    attempt: int
    forge: str
    external_id: str  # GitHub check-run id; "" for commit statuses
    rank: int  # how far the reported state got (see integration.reporting.states)
    updated_at: float

    @classmethod
    def from_record(cls, row: tuple[Any, ...]) -> Self:
        job_id, attempt, forge, external_id, rank, updated_at = row
        return cls(str(job_id), int(attempt), str(forge), str(external_id), int(rank), float(updated_at))


@dataclass(frozen=True, slots=True)
class DeferredBuild:
    key: str  # the build's dedupe key
    doc: str  # the BuildRequested as JSON
    attempts: int  # failed retries so far
    first_at: float  # when it was deferred (unix time)
    next_at: float  # when it is due (or its lease ends)
    last_error: str

    @classmethod
    def from_record(cls, row: tuple[Any, ...]) -> Self:
        key, doc, attempts, first_at, next_at, last_error = row
        return cls(str(key), str(doc), int(attempts), float(first_at), float(next_at), str(last_error))


class SeenStore(Protocol):
    """Dedupe claims and report records. ``open()`` once, ``close()`` once."""

    async def open(self) -> None:
        """Connect and apply the schema (idempotent)."""

    async def close(self) -> None:
        """Release the connection; safe to call twice."""

    async def claim(self, kind: str, key: str, ttl: float) -> bool:
        """True if ``key`` was not claimed (or its claim expired) and is now; False if it is taken."""

    async def release(self, kind: str, key: str) -> None:
        """Forget a claim (the work it guarded failed and may be retried)."""

    async def purge_expired(self) -> int:
        """Delete expired claims; returns how many."""

    async def start_build(self, delivery_key: str, build_key: str, doc: str, ttl: float,
                          lease_until: float) -> BuildStart:
        """In one transaction: claim delivery ``delivery_key`` and build ``build_key`` (``ttl``), and keep
        the build (``doc``) as a deferred build due at ``lease_until``. See the module docstring."""

    async def abandon_build(self, delivery_key: str, build_key: str) -> None:
        """Undo ``start_build`` in one transaction: release both claims, forget the build."""

    async def take_due(self, now: float, lease: float, limit: int) -> list[DeferredBuild]:
        """Up to ``limit`` builds due at ``now``, each leased (not due again) until ``now + lease``."""

    async def reschedule(self, key: str, attempts: int, next_at: float, error: str) -> None:
        """Record a failed retry of ``key``: due again at ``next_at``."""

    async def forget_deferred(self, key: str) -> None:
        """Drop ``key`` (built, or given up)."""

    async def get_report(self, job_id: str, attempt: int) -> ReportRecord | None:
        """The last report of ``(job_id, attempt)``, if any."""

    async def save_report(self, record: ReportRecord) -> None:
        """Insert the report record of ``(record.job_id, record.attempt)``, or raise its rank to
        ``record.rank``; a record of a lower or equal rank changes nothing."""

    async def lock_report(self, job_id: str, holder: str, until: float) -> bool:
        """Take (or renew) the reporting lock of ``job_id`` for ``holder`` until ``until`` (unix time);
        False while another holder's lease lives."""

    async def unlock_report(self, job_id: str, holder: str) -> None:
        """Give the lock of ``job_id`` up, if ``holder`` still has it."""

    # Workflow schedules (integration/store/schedulesql.py, integration/schedules.py).

    async def replace_schedules(self, forge: str, repo: str, clone_url: str, installation_id: int, branch: str,
                                ticks: Sequence[tuple[str, float]]) -> None:
        """Make ``branch``'s schedules exactly ``ticks`` (cron, latest tick before now)."""

    async def schedules(self) -> list[ScheduleRecord]:
        """Every registered schedule."""

    async def take_tick(self, key: str, tick: float, now: float) -> bool:
        """True for the one caller across replicas that takes ``tick`` of schedule ``key``."""

    async def give_back(self, key: str, tick: float, previous: float, error: str, previous_run_at: float = 0.0) -> None:
        """Undo ``take_tick`` of a run that could not start, unless a later tick was taken since."""
