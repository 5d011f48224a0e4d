"""Helpers of the greenness tests: builds, workflows, a clock, a recorder on a store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from common.rpc import jobs_pb2
from common.workflow import Workflow
from common.workflow.parser import parse_workflow
from integration.events import BuildRequested, Forge, Repo
from integration.greenness.model import QueueKey
from integration.greenness.recorder import GreennessRecorder
from integration.jobs import job_requests

REPO = Repo(Forge.FORGEJO, "acme/app", "https://forge.test/acme/app.git")
REF = "refs/heads/main"
QUEUE = QueueKey("forgejo", "acme/app", REF)


def sha(name: str) -> str:
    """A 40-hex commit id named ``name`` in the test."""
    return hashlib.sha1(name.encode()).hexdigest()


def workflow(*jobs: str, optional: tuple[str, ...] = ()) -> Workflow:
    body = "".join(
        f'  job id="{j}" runs_on="illumos-stable"{" required=false" if j in optional else ""} {{\n'
        f'    step run="make {j}"\n  }}\n' for j in jobs)
    return parse_workflow(f"workflow {{\n{body}}}\n")


def build(commit: str, ref: str = REF) -> BuildRequested:
    return BuildRequested(REPO, ref, commit, "forgejo push")


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


S = jobs_pb2.JobState


class Runner:
    """Publishes nothing: records a commit through ``prepare`` and reports its jobs' outcomes."""

    def __init__(self, recorder: GreennessRecorder) -> None:
        self.recorder = recorder
        self.runs: dict[str, str] = {}

    async def push(self, commit: str, wf: Workflow, ref: str = REF) -> list[str]:
        """The job keys ``prepare`` left to run."""
        run_id = f"run-{commit[:8]}"
        self.runs[commit] = run_id
        b = build(commit, ref)
        published = await self.recorder.prepare(b, run_id, wf, job_requests(wf, b, run_id))
        return [r.key for r in published]

    async def finish(self, commit: str, outcomes: dict[str, str], attempt: int = 1, reason: str = "",
                     ref: str = REF) -> list:
        made = []
        queue = QueueKey(QUEUE.forge, QUEUE.repo, ref)
        for job, state in outcomes.items():
            made += await self.recorder.record(queue, commit, job, self.runs[commit], attempt, state,
                                               reason if state != "succeeded" else "")
        return made
