"""The greenness vocabulary: queues, the jobs a commit expects, verdicts, transitions.

A **queue** is one (forge, repository, ref) validation namespace. Every
commit that reaches it gets a **verdict** per scope: the whole queue (scope
``""``) and each configured project of the repository. A verdict's
``degree`` is in [0, 1]: 0 = every required job green, 1 = every one
failed; None while not every required job has reported.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Self

from common.rpc import jobs_pb2

WHOLE = ""  # the scope of the whole queue (projects have names)


class Status(enum.Enum):
    """Where a commit stands in one scope. Only GREEN is green: the rest is fail-closed."""

    PENDING = "pending"  # required jobs have not all reported yet
    GREEN = "green"  # every required job succeeded
    NOT_GREEN = "not_green"  # at least one required job did not succeed
    INCOMPLETE = "incomplete"  # required jobs did not all report within greenness.incomplete_after

    @property
    def decided(self) -> bool:
        """Whether the queue's state follows this commit (a pending commit does not move it)."""
        return self is not Status.PENDING


# Terminal job states as recorded: the JobState's lower-case name.
SUCCEEDED = "succeeded"
TERMINAL_STATES = {
    jobs_pb2.JOB_STATE_SUCCEEDED: SUCCEEDED,
    jobs_pb2.JOB_STATE_FAILED: "failed",
    jobs_pb2.JOB_STATE_CANCELLED: "cancelled",
    jobs_pb2.JOB_STATE_ERRORED: "errored",
}
NOT_REPORTED = ""


@dataclass(frozen=True, slots=True)
class QueueKey:
    """One (forge, repository, ref); ``text`` is how the store and the API name it."""

    forge: str
    repo: str  # owner/name
    ref: str  # refs/heads/main

    @property
    def text(self) -> str:
        return f"{self.forge}:{self.repo}:{self.ref}"

    @classmethod
    def parse(cls, text: str) -> Self:
        forge, repo, ref = text.split(":", 2)
        return cls(forge, repo, ref)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One required-or-not job of one commit and its latest outcome (``state`` "" = not reported)."""

    job: str  # the workflow job's key, or "external:<column>" for an out-of-tree result
    required: bool
    weight: float
    projects: tuple[str, ...]  # the projects this job validates (empty: only the whole queue)
    state: str = NOT_REPORTED
    reason: str = ""
    attempt: int = 0
    carried_from: str = ""  # the commit whose outcome this is, when not run for this commit

    @property
    def reported(self) -> bool:
        return self.state != NOT_REPORTED

    @property
    def green(self) -> bool:
        return self.state == SUCCEEDED


@dataclass(frozen=True, slots=True)
class Verdict:
    """A commit's standing in one scope, with why (one line per job that is not green, or that is waited for)."""

    status: Status
    degree: float | None
    reasons: tuple[str, ...] = ()
    carried_from: str = ""  # every job of the scope was carried from this commit

    def same_as(self, other: Verdict | None) -> bool:
        return other is not None and (self.status, self.degree, self.reasons, self.carried_from) == (
            other.status, other.degree, other.reasons, other.carried_from)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status.value, "degree": self.degree, "reasons": list(self.reasons)}
        if self.carried_from:
            doc["carried_from"] = self.carried_from
        return doc


@dataclass(frozen=True, slots=True)
class CommitVerdict:
    """A stored verdict: which commit, its place in the queue, when."""

    queue: QueueKey
    project: str
    sha: str
    seq: int  # the order commits reached the queue
    verdict: Verdict
    recorded_at: float
    plan: str = ""  # how the commit was validated: "full: <why>" or "incremental since <sha>: ..."

    def to_json(self) -> dict[str, Any]:
        return {"sha": self.sha, "seq": self.seq, "project": self.project, "recorded_at": self.recorded_at,
                "plan": self.plan, **self.verdict.to_json()}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """When a commit became green or stopped being green in a scope, and why."""

    project: str
    sha: str
    at: float
    event: str  # "became green", "stopped being green", "not green", "incomplete"
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "sha": self.sha, "at": self.at, "event": self.event, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ScopeState:
    """A scope's last-green commit and its newest decided commit (the "head" of the queue's state)."""

    queue: QueueKey
    project: str
    last_green: CommitVerdict | None
    head: CommitVerdict | None

    @property
    def green(self) -> bool:
        return self.head is not None and self.head.verdict.status is Status.GREEN

    def key(self) -> tuple[str, bool]:
        """What a transition changes: the last-green commit, and whether the newest decided commit is green."""
        return (self.last_green.sha if self.last_green else "", self.green)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a scope's ``ScopeState.key``: delivered once to every hook that follows the queue."""

    queue: QueueKey
    project: str
    number: int  # per queue, from 1: hooks receive a queue's transitions in this order
    state: str  # "green" or "not-green": whether the newest decided commit is green
    commit: str  # the newest decided commit
    degree: float | None
    last_green: str  # the scope's last-green commit ("" = none yet)
    previous_last_green: str
    reason: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": {"forge": self.queue.forge, "repo": self.queue.repo, "ref": self.queue.ref},
            "project": self.project, "transition": self.number, "state": self.state, "commit": self.commit,
            "degree": self.degree, "last_green": self.last_green, "previous_last_green": self.previous_last_green,
            "reason": self.reason, "at": self.at,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)
