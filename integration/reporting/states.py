"""How each job state is shown on each forge, and how far along it is.

``rank`` only grows during a job attempt; an event whose rank is not above
the last reported one is late or duplicated and is not reported again.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.rpc import jobs_pb2


@dataclass(frozen=True, slots=True)
class StateSpec:
    name: str
    rank: int
    github_status: str  # queued / in_progress / completed
    github_conclusion: str | None  # set when completed
    forgejo_state: str  # pending / success / failure / error

    @property
    def terminal(self) -> bool:
        return self.github_status == "completed"


S = jobs_pb2.JobState
STATES: dict[int, StateSpec] = {
    S.JOB_STATE_QUEUED: StateSpec("queued", 1, "queued", None, "pending"),
    S.JOB_STATE_PROVISIONING: StateSpec("provisioning", 2, "queued", None, "pending"),
    S.JOB_STATE_RUNNING: StateSpec("running", 3, "in_progress", None, "pending"),
    S.JOB_STATE_SUCCEEDED: StateSpec("succeeded", 4, "completed", "success", "success"),
    S.JOB_STATE_FAILED: StateSpec("failed", 4, "completed", "failure", "failure"),
    S.JOB_STATE_CANCELLED: StateSpec("cancelled", 4, "completed", "cancelled", "error"),
    # errored = Solstice failed, not the user's code. GitHub has no such
    # conclusion; "failure" keeps branch protection closed, the title says why.
    S.JOB_STATE_ERRORED: StateSpec("errored", 4, "completed", "failure", "error"),
}


def spec_of(state: int) -> StateSpec | None:
    return STATES.get(state)


def github_status_of_rank(rank: int) -> str:
    """The GitHub status last shown for a reported ``rank``."""
    return "completed" if rank >= 4 else "in_progress" if rank == 3 else "queued"
