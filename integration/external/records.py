"""What out-of-tree CI keeps and hands around: dispatches, results (trusted and untrusted apart), health.

``ResultReport`` is the caller's body, validated but UNTRUSTED: it is stored
as sent (a JSON column of its own) and shown as the caller's claim.
``Trusted`` holds what the server itself established: the repository its
token proved, that repository's level, and the upstream commit from the
relay's own dispatch record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Self

from integration.external.allowlist import RepoKey
from integration.external.levels import Level

# Dispatch states: pending (to send, or waiting for a retry), sent (the downstream's forge took it),
# failed (every try failed, or the forge refused it), dropped (the downstream left the allowlist meanwhile).
PENDING, SENT, FAILED, DROPPED = "pending", "sent", "failed", "dropped"
IN_PROGRESS, COMPLETED = "in_progress", "completed"


@dataclass(frozen=True, slots=True)
class DispatchRecord:
    """One upstream delivery relayed to one downstream; unique per (delivery, downstream)."""

    id: str
    delivery: str  # "<forge>:<delivery id>" of the upstream webhook
    downstream: RepoKey
    upstream: RepoKey
    installation_id: int  # the upstream's GitHub App installation (for L4 check runs); 0 elsewhere
    sha: str
    ref: str
    pr_number: int  # 0 for a push
    event: str  # push / pull_request
    action: str  # push, opened, reopened, synchronize, closed
    level: Level  # the downstream's level when the delivery came
    body: str  # the JSON request body sent to the downstream
    state: str = PENDING
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""
    created_at: float = 0.0
    sent_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class SuiteSummary:
    """Counts only, as the downstream reported them."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.errors


@dataclass(frozen=True, slots=True)
class ResultReport:
    """The body of one ``POST /api/v1/results`` (schema version 1), validated - and untrusted."""

    delivery_id: str
    upstream_repo: str
    upstream_sha: str
    run_id: str
    run_attempt: int
    job_id: str
    job_name: str
    status: str  # in_progress / completed
    upstream_pr: int | None = None
    conclusion: str | None = None
    started_at: str | None = None  # the downstream's clock, RFC 3339
    completed_at: str | None = None
    tests: SuiteSummary | None = None
    artifact_url: str | None = None
    schema_version: int = 1

    def to_json(self) -> dict[str, Any]:
        """The body as the schema spells it (fields left out when None)."""
        doc: dict[str, Any] = {
            "schema_version": self.schema_version, "delivery_id": self.delivery_id,
            "upstream": {"repo": self.upstream_repo, "sha": self.upstream_sha},
            "run_id": self.run_id, "run_attempt": self.run_attempt, "job_id": self.job_id,
            "job_name": self.job_name, "status": self.status,
        }
        if self.upstream_pr is not None:
            doc["upstream"]["pr_number"] = self.upstream_pr
        for name in ("conclusion", "started_at", "completed_at", "artifact_url"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.tests is not None:
            doc["tests"] = asdict(self.tests)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Self:
        """A body already validated against the schema (``report_schema.parse_report`` checks first)."""
        upstream = doc["upstream"]
        tests = doc.get("tests")
        return cls(
            delivery_id=doc["delivery_id"], upstream_repo=upstream["repo"], upstream_sha=upstream["sha"],
            run_id=doc["run_id"], run_attempt=doc["run_attempt"], job_id=doc["job_id"], job_name=doc["job_name"],
            status=doc["status"], upstream_pr=upstream.get("pr_number"), conclusion=doc.get("conclusion"),
            started_at=doc.get("started_at"), completed_at=doc.get("completed_at"),
            tests=SuiteSummary(**tests) if tests is not None else None, artifact_url=doc.get("artifact_url"),
            schema_version=doc["schema_version"],
        )

    def merged_over(self, earlier: ResultReport) -> ResultReport:
        """This report, with what only ``earlier`` said kept (a completed report after in_progress)."""
        return ResultReport(**{
            name: getattr(self, name) if getattr(self, name) is not None else getattr(earlier, name)
            for name in self.__dataclass_fields__
        })


@dataclass(frozen=True, slots=True)
class ResultKey:
    """One downstream job attempt for one upstream delivery: the state machine's unit."""

    downstream: RepoKey
    delivery: str
    run_id: str
    run_attempt: int
    job_id: str

    def __str__(self) -> str:
        return f"{self.downstream}/{self.delivery}/{self.run_id}/{self.run_attempt}/{self.job_id}"


@dataclass(frozen=True, slots=True)
class Trusted:
    """What the server established itself, never taken from the body."""

    downstream: RepoKey  # the repository the OIDC token proved
    level: Level  # its level for this upstream, from the allowlist
    dispatch_id: str
    upstream: RepoKey  # from the dispatch record
    sha: str
    pr_number: int
    installation_id: int
    dispatched_at: float
    sent_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "downstream": str(self.downstream), "level": self.level.name, "dispatch_id": self.dispatch_id,
            "upstream": str(self.upstream), "sha": self.sha, "pr_number": self.pr_number,
            "installation_id": self.installation_id, "dispatched_at": self.dispatched_at, "sent_at": self.sent_at,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Self:
        return cls(
            RepoKey.parse(doc["downstream"]), Level.parse(doc["level"]), str(doc["dispatch_id"]),
            RepoKey.parse(doc["upstream"]), str(doc["sha"]), int(doc["pr_number"]), int(doc["installation_id"]),
            float(doc["dispatched_at"]), None if doc["sent_at"] is None else float(doc["sent_at"]),
        )


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """The stored state of one ``ResultKey``; times are the server's (first seen)."""

    key: ResultKey
    trusted: Trusted
    status: str
    conclusion: str | None
    first_seen_at: float
    completed_seen_at: float | None
    updated_at: float
    report: ResultReport  # untrusted

    @property
    def queue_seconds(self) -> float | None:
        """Dispatch sent -> first report (the downstream's queue), as the server saw it."""
        start = self.trusted.sent_at or self.trusted.dispatched_at
        return max(0.0, self.first_seen_at - start)

    @property
    def execution_seconds(self) -> float | None:
        """First report -> completed, as the server saw it (None until completed)."""
        if self.completed_seen_at is None:
            return None
        return max(0.0, self.completed_seen_at - self.first_seen_at)


@dataclass(frozen=True, slots=True)
class Health:
    """How a downstream's dispatches have gone."""

    downstream: RepoKey
    failures: int = 0  # failed dispatch tries in a row
    unhealthy_since: float | None = None
    last_error: str = ""
    last_success_at: float | None = None
    last_failure_at: float | None = None

    @property
    def healthy(self) -> bool:
        return self.unhealthy_since is None


@dataclass(frozen=True, slots=True)
class UpstreamCheck:
    """The check run (GitHub) or status (Forgejo) an L4 result shows on the upstream commit."""

    key: str  # str(ResultKey)
    upstream: RepoKey
    sha: str
    installation_id: int
    name: str
    external_id: str = ""  # GitHub check-run id once created
    shown_rank: int = 0  # 0 nothing, 1 in progress, 2 completed
    wanted_rank: int = 0
    wanted: str = ""  # JSON of what to show (status, conclusion, title, summary, details_url)
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class CachedAllowlist:
    source: str
    body: str
    digest: str
    loaded_at: float


def dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


__all__ = [
    "COMPLETED", "DROPPED", "FAILED", "IN_PROGRESS", "PENDING", "SENT", "CachedAllowlist", "DispatchRecord",
    "Health", "ResultKey", "ResultRecord", "ResultReport", "SuiteSummary", "Trusted", "UpstreamCheck", "dumps",
]
