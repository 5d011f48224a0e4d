"""Typed, frozen rows of the state store, each built by ``from_row``.

A row is anything indexable by column name: an ``asyncpg.Record`` or a
``sqlite3.Row``. Both back-ends store times as epoch seconds (a float, taken
from the database's clock) so one constructor serves both; records carry
timezone-aware UTC datetimes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from common.rpc import jobs_pb2
from orchestrator.store.states import JobState, StepState


class Row(Protocol):
    def __getitem__(self, key: str) -> Any: ...


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), tz=UTC)


def _required_time(value: float) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


@dataclass(frozen=True)
class JobRecord:
    """A job as the store knows it; ``attempt``/``state``/``host`` describe its current attempt."""

    job_id: str
    run_id: str
    key: str
    name: str
    runs_on: str
    repo: str
    ref: str
    sha: str
    state: JobState
    attempt: int
    host: str          # "" while queued
    reason: str        # why it failed/errored/was requeued, "" otherwise
    created_at: datetime
    updated_at: datetime
    request: jobs_pb2.JobRequest

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @classmethod
    def from_row(cls, row: Row) -> JobRecord:
        request = jobs_pb2.JobRequest()
        request.ParseFromString(bytes(row["request"]))
        return cls(
            job_id=row["job_id"],
            run_id=row["run_id"],
            key=row["key"],
            name=row["name"],
            runs_on=row["runs_on"],
            repo=row["repo"],
            ref=row["ref"],
            sha=row["sha"],
            state=JobState(row["state"]),
            attempt=int(row["attempt"]),
            host=row["host"],
            reason=row["reason"],
            created_at=_required_time(row["created_at"]),
            updated_at=_required_time(row["updated_at"]),
            request=request,
        )


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt (run) of a job: attempt 1 is the first, each retry/requeue adds one."""

    job_id: str
    attempt: int
    host: str
    state: JobState
    reason: str
    vm_name: str
    queued_at: datetime
    started_at: datetime | None   # when a host claimed it
    finished_at: datetime | None  # when it reached a terminal state
    running_at: datetime | None = None  # when it reached running (its runner called in)

    @classmethod
    def from_row(cls, row: Row) -> AttemptRecord:
        return cls(
            job_id=row["job_id"],
            attempt=int(row["attempt"]),
            host=row["host"],
            state=JobState(row["state"]),
            reason=row["reason"],
            vm_name=row["vm_name"],
            queued_at=_required_time(row["queued_at"]),
            started_at=_time(row["started_at"]),
            finished_at=_time(row["finished_at"]),
            running_at=_time(row["running_at"]),
        )


@dataclass(frozen=True)
class StepRecord:
    """The latest known result of one step of one attempt."""

    job_id: str
    attempt: int
    index: int
    name: str
    state: StepState
    exit_code: int
    duration: float  # seconds

    def to_proto(self) -> jobs_pb2.StepResult:
        return jobs_pb2.StepResult(
            index=self.index, name=self.name, state=cast(jobs_pb2.StepState, int(self.state)),
            exit_code=self.exit_code, duration_seconds=self.duration,
        )

    @classmethod
    def from_row(cls, row: Row) -> StepRecord:
        return cls(
            job_id=row["job_id"],
            attempt=int(row["attempt"]),
            index=int(row["idx"]),
            name=row["name"],
            state=StepState(row["state"]),
            exit_code=int(row["exit_code"]),
            duration=float(row["duration"]),
        )


@dataclass(frozen=True)
class HostRecord:
    """An orchestrator node; ``alive`` means its last heartbeat is at most ``stale_after`` s old.

    A dead host runs nothing (``running`` 0, whatever it last reported): its
    attempts are requeued elsewhere once the sweep finds it lapsed.
    """

    name: str
    labels: tuple[str, ...]
    capacity: int
    running: int
    last_heartbeat: datetime
    draining: bool
    alive: bool
    heartbeat_age: float  # seconds since the last heartbeat, by the database's clock

    @classmethod
    def from_row(cls, row: Row, stale_after: float) -> HostRecord:
        age = max(0.0, float(row["age"]))
        alive = age <= stale_after
        return cls(
            name=row["name"],
            labels=tuple(json.loads(row["labels"])),
            capacity=int(row["capacity"]),
            running=int(row["running"]) if alive else 0,
            last_heartbeat=_required_time(row["last_heartbeat"]),
            draining=bool(row["draining"]),
            alive=alive,
            heartbeat_age=age,
        )


@dataclass(frozen=True)
class AddressLease:
    """One guest address a VM holds from an address pool (bhyve driver)."""

    pool: str
    address: str
    host: str
    vm_name: str
    leased_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> AddressLease:
        return cls(row["pool"], row["address"], row["host"], row["vm_name"], _required_time(row["leased_at"]))


@dataclass(frozen=True)
class JobFilter:
    """Which jobs ``Store.list_jobs`` returns (``None`` = any); newest first, at most ``limit``."""

    repo: str | None = None
    ref: str | None = None
    state: JobState | None = None
    host: str | None = None
    run_id: str | None = None
    runs_on: str | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("JobFilter.limit must be at least 1")

    def conditions(self) -> Mapping[str, object]:
        """Column -> wanted value, for the filters that are set."""
        wanted = {
            "repo": self.repo, "ref": self.ref, "host": self.host,
            "run_id": self.run_id, "runs_on": self.runs_on,
            "state": None if self.state is None else int(self.state),
        }
        return {column: value for column, value in wanted.items() if value is not None}


@dataclass(frozen=True)
class OperatorTokenRecord:
    """An operator token as stored: its public id, whose it is, its role and lifetime, never the token.

    ``token_hash`` is the hex SHA-256 of the token's secret part (``orchestrator.operators``
    checks it); ``now`` is the database clock when the row was read, so expiry is judged
    by the one clock every host shares.
    """

    token_id: str
    name: str
    role: str  # "read" | "operate" | "admin"
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    now: datetime
    token_hash: str = field(repr=False, default="")

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= self.now

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_row(cls, row: Row) -> OperatorTokenRecord:
        return cls(
            token_id=row["token_id"],
            name=row["name"],
            role=row["role"],
            created_at=_required_time(row["created_at"]),
            expires_at=_time(row["expires_at"]),
            revoked_at=_time(row["revoked_at"]),
            now=_required_time(row["now"]),
            token_hash=row["token_hash"],
        )
