"""A seeded history for the dashboard's tests, written through the real store and log store.

    github acme/widgets, branch main, commits (oldest first):
      C1: build succeeded, test succeeded, lint succeeded
      C2: build succeeded, test failed (its log has an error line and hostile bytes), lint cancelled
      C3: build running, test queued, lint errored
    github acme/widgets pull request #7: P1 build failed then re-run (attempt 2 succeeded); P2 build succeeded
    github acme/gadgets, branch main: G1 build succeeded
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.logbatch import STDERR, STDOUT, SYSTEM
from common.rpc import jobs_pb2, runner_pb2
from orchestrator.logstore import LogStore
from orchestrator.node.failnote import note_failure
from orchestrator.store import JobState, StepState, Store

C1, C2, C3 = "c1" * 20, "c2" * 20, "c3" * 20
P1, P2, G1 = "a1" * 20, "a2" * 20, "b1" * 20
HOSTILE = b'<script>alert("pwned")</script> \x1b[31m<img src=x onerror=alert(1)>\x1b[0m \xff'
MATRIX = {  # (commit, job name) -> the state its cell shows
    (C1, "build"): "succeeded", (C1, "test"): "succeeded", (C1, "lint"): "succeeded",
    (C2, "build"): "succeeded", (C2, "test"): "failed", (C2, "lint"): "cancelled",
    (C3, "build"): "running", (C3, "test"): "queued", (C3, "lint"): "errored",
}


@dataclass
class Seeded:
    jobs: dict[tuple[str, str], str] = field(default_factory=dict)  # (sha, name) -> job id
    error_line: int = 0  # the sequence of the failing test's error line


def request(job_id: str, name: str, sha: str, *, repo: str = "acme/widgets", ref: str = "refs/heads/main",
            pr: int = 0, run_id: str = "") -> jobs_pb2.JobRequest:
    checkout = jobs_pb2.Checkout(forge="github", repo=repo, ref=ref, sha=sha, pull_request=pr,
                                 clone_url=f"https://github.com/{repo}.git")
    return jobs_pb2.JobRequest(
        schema_version=jobs_pb2.SCHEMA_VERSION_1, job_id=job_id, run_id=run_id or f"run-{sha[:4]}", key=name,
        name=name, runs_on="ubuntu-22.04", checkout=checkout, source=jobs_pb2.JOB_SOURCE_FORGE,
        origin="github push", steps=[jobs_pb2.Step(name="Build", run="make"), jobs_pb2.Step(name="Test", run="t")])


async def drive(store: Store, job_id: str, state: JobState, attempt: int = 1) -> None:
    """Move the attempt to ``state`` the way a node would."""
    if state is JobState.QUEUED:
        return
    assert await store.claim(job_id, attempt, "host-a", f"vm-{job_id[:8]}-{attempt}")
    if state is JobState.PROVISIONING:
        return
    if state is JobState.ERRORED:
        assert await store.transition(job_id, attempt, state, "the VM did not boot: <console> said &nbsp;")
        return
    assert await store.transition(job_id, attempt, JobState.RUNNING)
    if state is not JobState.RUNNING:
        if state is JobState.CANCELLED:
            await store.cancel(job_id, "cancelled by a test")
        else:
            assert await store.transition(job_id, attempt, state, "step 2 (Test) failed" if
                                          state is JobState.FAILED else "")


async def write_log(logs: LogStore, job_id: str, attempt: int, runs: list[tuple[int, int, bytes]],
                    close: bool = True) -> int:
    """Append ``(step, stream, data)`` runs (``data`` lines joined by \\n); returns the last sequence."""
    joblog = await logs.open(job_id, attempt)
    batch = runner_pb2.LogBatch(first_sequence=joblog.highest_sequence + 1)
    for step, stream, data in runs:
        batch.runs.add(step=step, stream=stream, at=1.0, lines=data.count(b"\n") + 1, data=data)
    last = await joblog.append(batch)
    if close:
        await joblog.close()
    return last


async def seed(store: Store, logs: LogStore) -> Seeded:
    seeded = Seeded()
    n = 0
    for sha in (C1, C2, C3):
        for name in ("build", "test", "lint"):
            n += 1
            job_id = f"job-{n:02d}-{name}"
            seeded.jobs[(sha, name)] = job_id
            await store.submit(request(job_id, name, sha))
            await drive(store, job_id, JobState[MATRIX[(sha, name)].upper()])
    failing = seeded.jobs[(C2, "test")]
    await store.record_step(failing, 1, jobs_pb2.StepResult(index=0, name="Build", state=StepState.SUCCEEDED,
                                                            exit_code=0, duration_seconds=1.5))
    await store.record_step(failing, 1, jobs_pb2.StepResult(index=1, name="Test", state=StepState.FAILED,
                                                            exit_code=2, duration_seconds=3.25))
    await write_log(logs, failing, 1, [
        (-1, SYSTEM, b"checked out " + C2.encode()),
        (0, SYSTEM, b"step 1: Build"), (0, STDOUT, b"\x1b[32mbuilt\x1b[0m ok"),
        (1, SYSTEM, b"step 2: Test"), (1, STDOUT, b"running 3 tests\n" + HOSTILE),
        (1, STDERR, b"test_widget ... FAILED: expected 3, got 4\nsecond stderr line"),
    ])
    seeded.error_line = 7  # 1 checkout, 2-3 Build, 4 banner, 5-6 stdout, 7 the FAILED line
    steps = [jobs_pb2.StepResult(index=1, name="Test", state=jobs_pb2.STEP_STATE_FAILED, exit_code=2)]
    await note_failure(store, logs, failing, 1, steps)
    # the running build of C3 has a live log
    await write_log(logs, seeded.jobs[(C3, "build")], 1, [(0, STDOUT, b"compiling 1\ncompiling 2")], close=False)
    # pull request #7
    for job_id, sha in (("job-pr-1", P1), ("job-pr-2", P2)):
        await store.submit(request(job_id, "build", sha, ref="refs/pull/7/head", pr=7, run_id=f"run-pr-{sha[:4]}"))
        seeded.jobs[(sha, "build")] = job_id
    await drive(store, "job-pr-1", JobState.FAILED)
    await store.retry("job-pr-1")
    await drive(store, "job-pr-1", JobState.SUCCEEDED, attempt=2)
    await drive(store, "job-pr-2", JobState.SUCCEEDED)
    await store.submit(request("job-gadget", "build", G1, repo="acme/gadgets"))
    seeded.jobs[(G1, "build")] = "job-gadget"
    await drive(store, "job-gadget", JobState.SUCCEEDED)
    await store.register_host("host-a", ["ubuntu-22.04"], 4)
    await store.heartbeat("host-a", 1)
    return seeded
