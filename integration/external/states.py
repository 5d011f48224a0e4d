"""The state machine of one result key (repository, upstream delivery, run_id, run_attempt, job_id).

    (none)       --in_progress-->  in_progress    first-seen start time kept
    (none)       --completed---->  completed      a lost in_progress must not lose a result
    in_progress  --in_progress-->  in_progress    nothing changes (200, said so)
    in_progress  --completed---->  completed
    completed    --in_progress-->  409, nothing changes
    completed    --completed---->  409, nothing changes

A new ``run_attempt`` is another key, so it starts a fresh record (the
results API takes those from L3 repositories only).
"""

from __future__ import annotations

import enum

from integration.external.records import COMPLETED, IN_PROGRESS, ResultRecord


class Move(enum.Enum):
    CREATE = "created"
    COMPLETE = "completed"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"


def decide(existing: ResultRecord | None, status: str) -> Move:
    """What a report with ``status`` does to the record ``existing`` (None: there is none)."""
    if existing is None:
        return Move.CREATE
    if existing.status == IN_PROGRESS:
        return Move.COMPLETE if status == COMPLETED else Move.UNCHANGED
    return Move.CONFLICT


def conflict_message(existing: ResultRecord, status: str) -> str:
    what = f"job {existing.key.job_id!r} of run {existing.key.run_id} attempt {existing.key.run_attempt}"
    if status == IN_PROGRESS:
        return (f"{what} is already completed ({existing.conclusion}): an in_progress report cannot follow it; "
                "nothing was changed")
    return (f"{what} was already completed ({existing.conclusion}): a result is reported once; nothing was changed "
            "(a re-run is a new run_attempt)")
