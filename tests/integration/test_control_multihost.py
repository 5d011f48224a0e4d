"""Multi-host: a pull request's new head cancels its old head's jobs, closing it cancels the rest,
"Re-run" and "Re-run all checks" run jobs again - through a real orchestrator node's AdminService.

The node (instant driver) shares PostgreSQL and RabbitMQ with nothing else;
the integration publishes to its queues and reaches its AdminService over
the node's Unix socket (``integration.admin_link``), as
``solstice-integration serve`` does with ``admin.address`` set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.queue import RabbitJobPublisher, Topology
from integration.admin_link import AdminLink
from integration.settings import AdminLinkSettings
from orchestrator.node import Node
from orchestrator.store import JobState, Store, open_store
from tests.integration.stack import IntegrationStack
from tests.node.harness import node_settings, prefix, running_node
from tests.waiting import async_wait_until

REPO = "Codertocat/Hello-World"
OLD, NEW = "a" * 40, "b" * 40
SLOW = """\
workflow name="pr" {
  job id="slow" runs_on="lab-a" {
    step name="Wait" run="sleep 60"
  }
}
"""


class Control:
    def __init__(self, stack: IntegrationStack, store: Store, node: Node) -> None:
        self.stack, self.store, self.node = stack, store, node

    async def state(self, job_id: str) -> JobState | None:
        job = await self.store.get_job(job_id)
        return job.state if job is not None else None

    async def reaches(self, job_id: str, state: JobState, attempt: int = 1) -> None:
        async def there() -> bool:
            job = await self.store.get_job(job_id)
            return job is not None and job.state is state and job.attempt == attempt
        await async_wait_until(there, timeout=30, what=f"{job_id} attempt {attempt} {state.name}")


@pytest.fixture
async def control(pg_database: str, amqp_vhost_url: str, tmp_path: Path, fixtures_dir: Path,
                  app_key) -> AsyncIterator[Control]:
    pfx = prefix()
    settings = node_settings(pg_database, amqp_vhost_url, tmp_path, pfx, timeouts__job=120.0)
    async with running_node(settings) as node, open_store(pg_database, pool_size=2) as store, \
            RabbitJobPublisher(amqp_vhost_url, Topology(pfx)) as publisher:
        link = AdminLink(AdminLinkSettings(address=node.admin_socket))
        (tmp_path / "integration").mkdir()
        stack = IntegrationStack(tmp_path / "integration", fixtures_dir, app_key, publisher, canceller=link,
                                 retrier=link)
        await stack.start()
        try:
            stack.github.put_file(REPO, OLD, SLOW)
            stack.github.put_file(REPO, NEW, SLOW)
            yield Control(stack, store, node)
        finally:
            await stack.close()


def pr_event(payload, action: str, sha: str) -> dict:
    body = payload(f"github/pull_request.{action}")
    body["pull_request"]["head"]["sha"] = sha
    return body


async def test_a_new_head_cancels_the_old_one_and_closing_cancels_the_rest(control: Control, payload):
    stack = control.stack
    status, answer = await stack.deliver_github("pull_request", pr_event(payload, "opened", OLD))
    assert (status, answer["result"]) == (202, "queued"), answer
    [old_job] = answer["jobs"]
    await control.reaches(old_job, JobState.RUNNING)

    status, answer = await stack.deliver_github("pull_request", pr_event(payload, "synchronize", NEW))
    assert (status, answer["result"]) == (202, "queued"), answer
    assert "1 superseded job(s) cancelled" in answer["detail"]
    [new_job] = answer["jobs"]
    await control.reaches(old_job, JobState.CANCELLED)
    old = await control.store.get_job(old_job)
    assert old is not None and old.reason == f"superseded: pull request #2 now builds {NEW[:12]}"
    await control.reaches(new_job, JobState.RUNNING)  # the new head is not touched

    status, answer = await stack.deliver_github("pull_request", pr_event(payload, "closed", NEW))
    assert (status, answer["result"]) == (202, "cancel requested"), answer
    assert "1 job(s) reached" in answer["detail"]
    await control.reaches(new_job, JobState.CANCELLED)


async def test_re_run_and_re_run_all_checks(control: Control, payload):
    stack = control.stack
    status, answer = await stack.deliver_github("pull_request", pr_event(payload, "opened", NEW))
    [job_id] = answer["jobs"]
    await control.reaches(job_id, JobState.RUNNING)
    rerun = payload("github/check_run.rerequested")
    rerun["repository"] = payload("github/pull_request.opened")["repository"]
    rerun["check_run"].update(external_id=job_id, head_sha=NEW)
    status, answer = await stack.deliver_github("check_run", rerun)
    assert (status, answer["result"]) == (202, "retry refused"), answer  # still running: nothing to re-run

    status, answer = await stack.deliver_github("pull_request", pr_event(payload, "closed", NEW))
    await control.reaches(job_id, JobState.CANCELLED)
    status, answer = await stack.deliver_github("check_run", rerun)
    assert (status, answer["result"]) == (202, "retry requested"), answer
    await control.reaches(job_id, JobState.RUNNING, attempt=2)

    # "Re-run" of the second attempt's check run names the attempt in its external id
    assert (await stack.deliver_github("pull_request", pr_event(payload, "closed", NEW)))[0] == 202
    await control.reaches(job_id, JobState.CANCELLED, attempt=2)
    suite = payload("github/check_suite.rerequested")
    suite["repository"] = rerun["repository"]
    suite["check_suite"]["head_sha"] = NEW
    status, answer = await stack.deliver_github("check_suite", suite)
    assert (status, answer["result"]) == (202, "retry requested"), answer
    assert answer["detail"] == f"1 job(s) of {NEW[:12]} run again"
    await control.reaches(job_id, JobState.RUNNING, attempt=3)

    suite["check_suite"]["head_sha"] = OLD  # nothing was built there
    status, answer = await stack.deliver_github("check_suite", suite)
    assert (status, answer["result"]) == (202, "retry refused"), answer


async def test_an_unreachable_orchestrator_is_a_503_and_never_fails_the_build(tmp_path: Path, fixtures_dir: Path,
                                                                             app_key, payload, queue):
    link = AdminLink(AdminLinkSettings(address=str(tmp_path / "no-such.sock"), timeout=2))
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, canceller=link, retrier=link)
    await stack.start()
    try:
        stack.github.put_file(REPO, NEW, SLOW.replace("lab-a", "illumos-stable"))
        status, answer = await stack.deliver_github("pull_request", pr_event(payload, "synchronize", NEW))
        assert (status, answer["result"]) == (202, "queued"), answer  # built; the supersede is only logged
        status, answer = await stack.deliver_github("pull_request", pr_event(payload, "closed", NEW))
        assert (status, answer["result"]) == (503, "try again"), answer
        assert "cannot reach the orchestrator" in answer["detail"]
    finally:
        await stack.close()
