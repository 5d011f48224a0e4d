"""The ``ExternalStore`` interface (one contract test-suite runs on SQLite and PostgreSQL).

Everything several integration nodes must agree on lives here: the last
valid allowlist (so a restart while its URL is down keeps it), dispatch
records (unique per upstream delivery and downstream: a replayed webhook
dispatches nothing twice; leased to one sender at a time), downstream
health, the per-repository token buckets of the results API, result
records (the state machine's conditional writes) and the check runs L4
results show upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from integration.external.allowlist import RepoKey
from integration.external.records import (
    CachedAllowlist,
    DispatchRecord,
    Health,
    ResultKey,
    ResultRecord,
    UpstreamCheck,
)


class ExternalStore(Protocol):
    async def open(self) -> None:
        """Connect and apply the schema (idempotent)."""

    async def close(self) -> None:
        """Release the connection; safe to call twice."""

    # -- allowlist cache ---------------------------------------------------
    async def save_allowlist(self, cached: CachedAllowlist) -> None: ...

    async def load_allowlist(self, source: str) -> CachedAllowlist | None: ...

    # -- dispatches ----------------------------------------------------------
    async def record_dispatches(self, records: Sequence[DispatchRecord], expires_at: float) -> list[DispatchRecord]:
        """Insert the records whose (delivery, downstream) is new; returns those inserted."""

    async def take_due_dispatches(self, now: float, lease: float, limit: int) -> list[DispatchRecord]:
        """Pending dispatches due at ``now``, each leased (not due again) until ``now + lease``."""

    async def dispatch_sent(self, dispatch_id: str, at: float) -> None:
        """The downstream's forge took it (or a report proved it arrived)."""

    async def dispatch_retry(self, dispatch_id: str, attempts: int, next_at: float, error: str) -> None: ...

    async def dispatch_finished(self, dispatch_id: str, state: str, attempts: int, at: float, error: str) -> None:
        """Failed or dropped for good."""

    async def find_dispatch(self, delivery: str, downstream: RepoKey) -> DispatchRecord | None: ...

    async def dispatches_of(self, upstream: RepoKey, sha: str | None = None,
                            pr_number: int | None = None) -> list[DispatchRecord]:
        """The dispatches of an upstream commit or pull request, oldest first."""

    # -- health ----------------------------------------------------------------
    async def note_dispatch(self, downstream: RepoKey, ok: bool, at: float, error: str,
                            unhealthy_after: int) -> Health:
        """Count one dispatch try; the health after it."""

    async def health(self, downstream: RepoKey) -> Health: ...

    async def all_health(self) -> list[Health]: ...

    # -- rate limit --------------------------------------------------------------
    async def take_token(self, repo: str, now: float, per_second: float, burst: int) -> float:
        """Take one token from ``repo``'s bucket: 0.0 if granted, else the seconds until one is there."""

    # -- results -----------------------------------------------------------------
    async def count_results(self, downstream: RepoKey) -> int: ...

    async def get_result(self, key: ResultKey) -> ResultRecord | None: ...

    async def insert_result(self, record: ResultRecord, expires_at: float) -> bool:
        """Create ``record``; False (nothing changed) when its key exists already."""

    async def complete_result(self, record: ResultRecord) -> bool:
        """Store ``record`` (completed) over an in_progress one; False when the stored one is not in_progress."""

    async def results_of_upstream(self, upstream: RepoKey, sha: str | None = None,
                                  pr_number: int | None = None) -> list[ResultRecord]: ...

    async def results_of_commits(self, upstream: RepoKey, shas: Sequence[str]) -> list[ResultRecord]: ...

    async def results_of_downstream(self, downstream: RepoKey, since: float, limit: int) -> list[ResultRecord]:
        """Newest first."""

    async def downstream_totals(self, since: float) -> list[tuple[RepoKey, int, int, float]]:
        """Per downstream: completed results since ``since``, how many succeeded, the last update."""

    # -- upstream checks (L4) ---------------------------------------------------
    async def want_upstream_check(self, check: UpstreamCheck, expires_at: float) -> UpstreamCheck:
        """Raise what ``check.key`` should show to ``check.wanted_rank`` (never lower); the stored row."""

    async def upstream_check_shown(self, key: str, external_id: str, rank: int) -> None: ...

    async def upstream_check_retry(self, key: str, attempts: int, next_at: float, error: str) -> None: ...

    async def take_due_upstream_checks(self, now: float, lease: float, limit: int) -> list[UpstreamCheck]:
        """Checks that show less than they should, due at ``now``, leased until ``now + lease``."""

    async def get_upstream_check(self, key: str) -> UpstreamCheck | None: ...

    # -- retention -------------------------------------------------------------
    async def purge(self, now: float) -> int:
        """Delete expired dispatches, results, checks and idle buckets; how many rows."""
