"""JobEvent factories for the reporter tests."""

from __future__ import annotations

import time
import uuid

from common.rpc import jobs_pb2

GH_REPO = "Codertocat/Hello-World"
FJ_REPO = "gitea/webhooks"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"

S = jobs_pb2.JobState


def checkout(forge: str = "github") -> jobs_pb2.Checkout:
    repo = GH_REPO if forge == "github" else FJ_REPO
    return jobs_pb2.Checkout(
        forge=forge, repo=repo, clone_url=f"https://example.test/{repo}.git", ref="refs/heads/master",
        sha=SHA, installation_id=1 if forge == "github" else 0,
    )


def job_event(
    job_id: str, state: int, forge: str = "github", *, attempt: int = 1, key: str = "build",
    steps: tuple[jobs_pb2.StepResult, ...] = (), log_tail: tuple[str, ...] = (), reason: str = "",
    age: float = 0.0, source: int = jobs_pb2.JOB_SOURCE_FORGE,
) -> jobs_pb2.JobEvent:
    """An event of a job the integration created (``source``: another to show it is ignored)."""
    event = jobs_pb2.JobEvent(
        schema_version=jobs_pb2.SCHEMA_VERSION_1, event_id=f"ev-{uuid.uuid4().hex}", job_id=job_id,
        run_id="run-1", attempt=attempt, key=key, name=key, checkout=checkout(forge), state=state,
        reason=reason, steps=list(steps), log_tail=list(log_tail), source=source,  # type: ignore[arg-type]
    )
    event.at.FromSeconds(int(time.time() - age))
    return event


def step(index: int, name: str, state: int, exit_code: int = 0, seconds: float = 1.0) -> jobs_pb2.StepResult:
    return jobs_pb2.StepResult(index=index, name=name, state=state, exit_code=exit_code, duration_seconds=seconds)


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex}"
