"""The ``SeenStore`` interface both back-ends implement (one contract test-suite runs on both).

Claims: ``claim(kind, key, ttl)`` atomically records ``key`` and returns True
the first time; while the claim lives (``ttl`` seconds) it returns False.
Kinds used: ``delivery`` (forge delivery ids) and ``build`` (forge, repo, ref,
head sha). A webhook that fails half-way ``release``s its claims so the
forge's redelivery is processed. ``purge_expired`` deletes dead claims.

Deferred builds: a build whose workflow could not be read or whose job
requests could not be published (forge API or queue down) is kept with a
retry time instead of being lost - GitHub and Forgejo do not redeliver a
failed webhook by themselves. ``take_due`` leases due ones (several replicas
never take the same one at once); the caller then ``forget_deferred``s or
``reschedule``s each.

Report records: the last state reported to the forge for one job attempt,
with the forge's id for it (GitHub check-run id); they make reporting
idempotent and keep a late or duplicate event from moving a check backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Self


@dataclass(frozen=True, slots=True)
class ReportRecord:
    job_id: str
    attempt: int
    forge: str
    external_id: str  # GitHub check-run id; "" for commit statuses
    rank: int  # how far the reported state got (see integration.reporting.states)
    updated_at: float

    @classmethod
    def from_record(cls, row: tuple[object, ...]) -> Self:
        job_id, attempt, forge, external_id, rank, updated_at = row
        return cls(str(job_id), int(attempt), str(forge), str(external_id), int(rank), float(updated_at))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class DeferredBuild:
    key: str  # the build's dedupe key
    doc: str  # the BuildRequested as JSON
    attempts: int  # failed retries so far
    first_at: float  # when it was deferred (unix time)
    next_at: float  # when it is due (or its lease ends)
    last_error: str

    @classmethod
    def from_record(cls, row: tuple[object, ...]) -> Self:
        key, doc, attempts, first_at, next_at, last_error = row
        return cls(str(key), str(doc), int(attempts), float(first_at), float(next_at), str(last_error))  # type: ignore[arg-type]


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

    async def defer(self, key: str, doc: str, next_at: float, error: str) -> None:
        """Keep build ``key`` (``doc``) for a retry at ``next_at``; a second deferral of ``key`` changes nothing."""

    async def take_due(self, now: float, lease: float, limit: int) -> list[DeferredBuild]:
        """Up to ``limit`` builds due at ``now``, each leased (not due again) until ``now + lease``."""

    async def reschedule(self, key: str, attempts: int, next_at: float, error: str) -> None:
        """Record a failed retry of ``key``: due again at ``next_at``."""

    async def forget_deferred(self, key: str) -> None:
        """Drop ``key`` (built, or given up)."""

    async def get_report(self, job_id: str, attempt: int) -> ReportRecord | None:
        """The last report of ``(job_id, attempt)``, if any."""

    async def save_report(self, record: ReportRecord) -> None:
        """Insert or replace the report record of ``(record.job_id, record.attempt)``."""
