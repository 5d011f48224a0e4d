"""Greenness of the seeded branch (tests/dashboard/support.py), written through the real recorder.

    github acme/widgets main: C1 green (degree 0), C2 not green (test failed, lint cancelled: degree 2/3),
    C3 pending (jobs still running); hook "deploy" owes transitions 1 (green at C1) and 2 (not green at C2)
"""

from __future__ import annotations

from pathlib import Path

from common.workflow.parser import parse_workflow
from integration.events import BuildRequested, Forge, Repo
from integration.greenness.model import QueueKey
from integration.greenness.recorder import GreennessRecorder
from integration.greenness.settings import GreennessSettings, HookSettings
from integration.greenness.store import SqliteGreennessStore
from integration.jobs import job_requests
from tests.dashboard.support import C1, C2, C3

REPO = Repo(Forge.GITHUB, "acme/widgets", "https://github.com/acme/widgets.git")
QUEUE = QueueKey("github", "acme/widgets", "refs/heads/main")
WORKFLOW = parse_workflow("workflow {\n" + "".join(
    f'  job id="{j}" runs_on="ubuntu-22.04" {{\n    step run="make {j}"\n  }}\n' for j in ("build", "test", "lint"))
    + "}\n")
GREENNESS = {C1: ("succeeded", "0.00"), C2: ("failed", "0.67"), C3: ("running", "not yet")}  # cell state, degree


async def seed_greenness(path: Path) -> None:
    store = SqliteGreennessStore(path)
    await store.open()
    try:
        # A hook the served node does not know: its deliveries wait, and the matrix says so.
        settings = GreennessSettings(enabled=True, hooks={"deploy": HookSettings(command=("/bin/true",))})
        recorder = GreennessRecorder(settings, store)
        outcomes = {C1: {"build": "succeeded", "test": "succeeded", "lint": "succeeded"},
                    C2: {"build": "succeeded", "test": "failed", "lint": "cancelled"},
                    C3: {"build": "succeeded"}}
        for sha, jobs in outcomes.items():
            build = BuildRequested(REPO, QUEUE.ref, sha, "github push")
            run_id = f"run-{sha[:4]}"
            await recorder.prepare(build, run_id, WORKFLOW, job_requests(WORKFLOW, build, run_id))
            for job, state in jobs.items():
                await recorder.record(QUEUE, sha, job, run_id, 1, state, "expected 3, got 4" if job == "test" else "")
    finally:
        await store.close()
    path.chmod(0o600)
