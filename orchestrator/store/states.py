"""The job state machine: which moves apply, and why the others are ignored.

    queued -> provisioning -> running -> succeeded | failed | cancelled | errored

A move applies only when it goes strictly forward (skipping states is allowed:
a job that fails to boot goes provisioning -> errored; a poison request goes
queued -> failed). ``cancelled`` is therefore reachable from every
non-terminal state. Nothing leaves a terminal state except ``Store.retry`` and
``Store.requeue_lapsed``, which start a NEW attempt in ``queued`` - never a
transition of the old one. Every refused transition is ignored and counted
under an ``IgnoreReason``.
"""

from __future__ import annotations

import enum
from typing import cast

from common.rpc import jobs_pb2


class JobState(enum.IntEnum):
    """A job's (or an attempt's) state; values equal ``jobs_pb2.JobState`` 1:1."""

    QUEUED = jobs_pb2.JOB_STATE_QUEUED
    PROVISIONING = jobs_pb2.JOB_STATE_PROVISIONING
    RUNNING = jobs_pb2.JOB_STATE_RUNNING
    SUCCEEDED = jobs_pb2.JOB_STATE_SUCCEEDED
    FAILED = jobs_pb2.JOB_STATE_FAILED
    CANCELLED = jobs_pb2.JOB_STATE_CANCELLED
    ERRORED = jobs_pb2.JOB_STATE_ERRORED

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int:
        """Position along the machine; all terminal states share the last rank."""
        return _RANK[self]

    def to_proto(self) -> jobs_pb2.JobState:
        return cast(jobs_pb2.JobState, jobs_pb2.JobState.Value(f"JOB_STATE_{self.name}"))  # the stubs: Value() -> int

    @classmethod
    def from_proto(cls, value: int) -> JobState:
        """The state of a proto value; ``JOB_STATE_UNSPECIFIED`` is a ValueError."""
        return cls(value)


class StepState(enum.IntEnum):
    """A step's state; values equal ``jobs_pb2.StepState`` 1:1."""

    UNSPECIFIED = jobs_pb2.STEP_STATE_UNSPECIFIED
    RUNNING = jobs_pb2.STEP_STATE_RUNNING
    SUCCEEDED = jobs_pb2.STEP_STATE_SUCCEEDED
    FAILED = jobs_pb2.STEP_STATE_FAILED
    SKIPPED = jobs_pb2.STEP_STATE_SKIPPED
    CANCELLED = jobs_pb2.STEP_STATE_CANCELLED

    @property
    def final(self) -> bool:
        return self not in (StepState.UNSPECIFIED, StepState.RUNNING)


class IgnoreReason(enum.StrEnum):
    """Why a transition was ignored (the key of the persisted counters)."""

    UNKNOWN_JOB = "unknown_job"        # no such job
    STALE_ATTEMPT = "stale_attempt"    # the job has moved on to a later attempt (or the attempt never existed)
    DUPLICATE = "duplicate"            # the attempt is already in that state
    BACKWARDS = "backwards"            # would move an unfinished attempt backwards
    LATE = "late"                      # the attempt has already finished


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ERRORED})
ACTIVE = frozenset({JobState.PROVISIONING, JobState.RUNNING})  # a host holds the attempt
_RANK = {
    JobState.QUEUED: 0,
    JobState.PROVISIONING: 1,
    JobState.RUNNING: 2,
    **{state: 3 for state in TERMINAL},
}


def can_move(current: JobState, to: JobState) -> bool:
    """True when ``current -> to`` is a forward move that a transition may apply."""
    return to.rank > current.rank


def sources_of(to: JobState) -> tuple[JobState, ...]:
    """Every state from which a transition to ``to`` applies (for a conditional UPDATE)."""
    return tuple(state for state in JobState if can_move(state, to))


def ignore_reason(current: JobState | None, current_attempt: int | None, attempt: int, to: JobState) -> IgnoreReason:
    """Classify a refused transition, given what the job looks like now."""
    if current is None or current_attempt is None:
        return IgnoreReason.UNKNOWN_JOB
    if attempt != current_attempt:
        return IgnoreReason.STALE_ATTEMPT
    if current == to:
        return IgnoreReason.DUPLICATE
    if current.terminal:
        return IgnoreReason.LATE
    return IgnoreReason.BACKWARDS


def sql_list(states: frozenset[JobState] | tuple[JobState, ...]) -> str:
    """``(2,3)`` for an SQL ``IN``: the values are enum ints, never user input."""
    return "(" + ",".join(str(int(state)) for state in sorted(states)) + ")"
