"""Greenness against the fake GitHub: a polled queue (the App's installation looked up) and incremental runs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.rpc import jobs_pb2
from integration.greenness.model import QueueKey
from integration.greenness.settings import GreennessSettings, ProjectSettings, QueueSettings
from tests.integration.greenness.flow import workflow_text
from tests.integration.stack import IntegrationStack, RabbitQueue

REPO = "Codertocat/Hello-World"
REF = "refs/heads/main"
INSTALLATION = 4711
S = jobs_pb2.JobState


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


SETTINGS = GreennessSettings(
    enabled=True,
    queues={"main": QueueSettings(repo=f"github:{REPO}", ref=REF, poll_interval=60)},
    projects={"docs": ProjectSettings(repo=f"github:{REPO}", paths=("docs/",), jobs=("docs",)),
              "core": ProjectSettings(repo=f"github:{REPO}", paths=("src/**",), jobs=("test",))},
)


@pytest.fixture
async def stack(tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes],
                queue: RabbitQueue) -> AsyncIterator[IntegrationStack]:
    made = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, greenness=SETTINGS)
    await made.start()
    made.github.install(REPO, INSTALLATION)
    try:
        yield made
    finally:
        await made.close()


async def test_a_polled_github_queue_builds_new_heads_and_only_affected_projects(stack: IntegrationStack,
                                                                                 queue: RabbitQueue):
    greenness = stack.integration.greenness
    assert greenness is not None
    a, b = sha("gh-a"), sha("gh-b")
    for commit, parents, files in ((a, (), ("src/main.rs", "docs/index.md")), (b, (a,), ("docs/index.md",))):
        stack.github.commit(REPO, commit, parents, files)
        stack.github.put_file(REPO, commit, workflow_text("test", "docs"))
    stack.github.set_branch(REPO, "main", a)
    assert await greenness.poller.poll_due() == 1
    first = await queue.take()
    assert sorted(r.key for r in first) == ["docs", "test"]
    assert {r.checkout.installation_id for r in first} == {INSTALLATION}  # the App's installation, looked up
    for r in first:
        await greenness.recorder.handle(jobs_pb2.JobEvent(
            schema_version=jobs_pb2.SCHEMA_VERSION_1, event_id=f"ev-{uuid.uuid4().hex}", job_id=r.job_id,
            run_id=r.run_id, attempt=1, key=r.key, name=r.name, checkout=r.checkout,
            state=S.JOB_STATE_SUCCEEDED, source=jobs_pb2.JOB_SOURCE_FORGE))
    stack.github.set_branch(REPO, "main", b)
    assert await greenness.poller.poll_due() == 0  # not due yet: polled every 60 s
    greenness.poller._next.clear()  # noqa: SLF001 - the interval has passed
    assert await greenness.poller.poll_due() == 1
    second = await queue.take()
    assert [r.key for r in second] == ["docs"]  # core untouched since a: its test is carried
    [verdict] = await greenness.store.commits(QueueKey("github", REPO, REF), "core", 1)
    assert verdict.sha == b and verdict.verdict.carried_from == a and verdict.verdict.status.value == "green"
