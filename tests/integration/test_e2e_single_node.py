"""End to end through one ``solstice serve`` process: forge webhook in, job run by the local driver, status back.

The forges are the fake GitHub and Forgejo servers (real HTTP on loopback,
strict about auth and about every request body). ``SOLSTICE_GITHUB_API_URL``
and ``SOLSTICE_FORGEJO_URL`` point the real process at them; the payloads are
the real fixtures with ``after`` set to a commit of a local git repository and
``repository.clone_url`` set to its path, so the runner checks out that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ciadm.client import AdminClient
from common.rpc import jobs_pb2
from integration.signature import sign
from tests.fakes.forges import FakeForgejo, FakeGitHub
from tests.integration.stack import INVALID
from tests.singlenode.harness import ServeProcess, git
from tests.waiting import async_wait_until

GITHUB_SECRET = "e2e-github-webhook-secret"
FORGEJO_SECRET = "e2e-forgejo-webhook-secret"
FORGEJO_TOKEN = "e2e-forgejo-token"
APP_ID = "5151"
GH_REPO = "Codertocat/Hello-World"
FJ_REPO = "gitea/webhooks"
JOB_TIMEOUT = 90.0

WORKFLOW = """\
workflow name="e2e" {
  job id="build" runs_on="illumos-stable" {
    step name="Build" run="echo building $(cat marker.txt)"
  }
  job id="broken" runs_on="illumos-stable" {
    step name="Prepare" run="echo preparing"
    step name="Fail" run="echo boom; exit 3"
  }
}
"""

BUILD_ONLY = """\
workflow name="e2e" {
  job id="build" runs_on="illumos-stable" {
    step name="Build" run="echo building $(cat marker.txt)"
  }
}
"""

SLOW = """\
workflow name="slow" {
  job id="slow" runs_on="illumos-stable" {
    step name="Wait" run="echo started; sleep 300"
  }
}
"""

# Short forge retries: an outage is seen (and the event requeued, the build deferred) within a second.
CONFIG = """\
report:
  attempts: 2
  backoff_initial: 0.05
  backoff_max: 0.2
  request_timeout: 10
webhooks:
  retry_initial: 0.2
  retry_max: 0.5
  retry_interval: 0.1
"""


@dataclass
class Single:
    """A running ``solstice serve`` wired to both fake forges, and a local repository with one commit."""

    node: ServeProcess
    github: FakeGitHub
    forgejo: FakeForgejo
    repo: Path
    sha: str
    fixtures: Path
    client: aiohttp.ClientSession

    def payload(self, name: str, **changes: Any) -> dict[str, Any]:
        """Fixture ``name`` pointing at the local repository's commit."""
        body = json.loads((self.fixtures / "forge" / f"{name}.json").read_text())
        body["repository"]["clone_url"] = str(self.repo)  # the runner fetches from here
        if "pull_request" in body:
            body["pull_request"]["head"]["sha"] = self.sha
        else:
            body["after"] = self.sha
        body.update(changes)
        return body

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with self.client.post(self.node.url + path, data=body, headers=headers) as answer:
            return answer.status, await answer.json()

    async def deliver_github(self, event: str, payload: dict[str, Any], delivery: str = "",
                             secret: str = GITHUB_SECRET) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        return await self._post("/webhooks/github", body, {
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + sign(secret, body), "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
        })

    async def deliver_forgejo(self, event: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        return await self._post("/webhooks/forgejo", body, {
            "X-Forgejo-Event": event, "X-Forgejo-Delivery": str(uuid.uuid4()),
            "X-Forgejo-Signature": sign(FORGEJO_SECRET, body), "Content-Type": "application/json",
        })

    def check_runs(self) -> dict[str, dict[str, Any]]:
        """Current check runs by name."""
        return {run["name"]: run for run in self.github.check_runs.values()}

    def history(self, name: str) -> list[tuple[str, str | None]]:
        """(status, conclusion) of each create/update of the check run called ``name``, in order."""
        return [(status, conclusion) for _, status, conclusion in self.github.check_run_statuses(name)]

    async def job(self, job_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.node.status, job_id)

    async def jobs(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.node.ciadm_json, "list")


def local_repo(path: Path) -> tuple[Path, str]:
    """A git repository whose one commit the jobs check out (``marker.txt`` proves it)."""
    path.mkdir()
    (path / "marker.txt").write_text("commit-under-test\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "under test")
    return path, git(path, "rev-parse", "HEAD")


@contextlib.asynccontextmanager
async def single_node(tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes], config: str = CONFIG,
                      extra_env: dict[str, str] | None = None) -> AsyncIterator[Single]:
    """A ``solstice serve`` process wired to both fake forges, its environment holding both webhook
    secrets and the Forgejo token; on the way out it must exit 0 without having printed a secret."""
    private, public = app_key
    github = FakeGitHub(fixtures=fixtures_dir / "forge" / "github", app_id=APP_ID, public_key=public)
    forgejo = FakeForgejo(fixtures=fixtures_dir / "forge" / "forgejo", token=FORGEJO_TOKEN)
    await github.start()
    await forgejo.start()
    key = tmp_path / "app.pem"
    key.write_bytes(private)
    config_file = tmp_path / "solstice.yaml"
    config_file.write_text(config)
    repo, sha = local_repo(tmp_path / "repo")
    env = {
        "SOLSTICE_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET, "SOLSTICE_GITHUB_APP_ID": APP_ID,
        "SOLSTICE_GITHUB_PRIVATE_KEY_FILE": str(key), "SOLSTICE_GITHUB_API_URL": github.url,
        "SOLSTICE_FORGEJO_WEBHOOK_SECRET": FORGEJO_SECRET, "SOLSTICE_FORGEJO_URL": forgejo.url,
        "SOLSTICE_FORGEJO_TOKEN": FORGEJO_TOKEN, **(extra_env or {}),
    }
    node = ServeProcess(tmp_path / "data", env=env, args=("--config", str(config_file)))
    client = aiohttp.ClientSession()
    try:
        # start() polls synchronously; the fakes must keep answering on this loop meanwhile.
        await asyncio.to_thread(node.start)
        yield Single(node, github, forgejo, repo, sha, fixtures_dir, client)
    finally:
        await client.close()
        code = await asyncio.to_thread(node.stop)
        if node.proc is not None and node.proc.stdout is not None:
            node.proc.stdout.close()  # the harness's reader thread has ended with the process
        await forgejo.close()
        await github.close()
    output = node.output()
    assert code == 0, output
    for secret in (GITHUB_SECRET, FORGEJO_SECRET, FORGEJO_TOKEN):
        assert secret not in output


@pytest.fixture
async def single(tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes]) -> AsyncIterator[Single]:
    async with single_node(tmp_path, fixtures_dir, app_key) as node:
        yield node


async def wait_for(predicate: Callable[[], Any], what: str) -> Any:
    return await async_wait_until(predicate, timeout=JOB_TIMEOUT, what=what, interval=0.1)


async def test_github_push_runs_the_jobs_and_reports_check_runs(single: Single):
    single.github.put_file(GH_REPO, single.sha, WORKFLOW)
    status, answer = await single.deliver_github("push", single.payload("github/push.new-branch"), delivery="e2e-1")
    assert status == 202 and answer["result"] == "queued", answer
    build_id, broken_id = answer["jobs"]  # in workflow order

    def both_concluded() -> bool:
        runs = single.check_runs()
        return all(runs.get(name, {}).get("conclusion") for name in ("solstice/build", "solstice/broken"))

    await wait_for(both_concluded, "both check runs to conclude")
    runs = single.check_runs()
    assert single.history("solstice/build") == [("queued", None), ("in_progress", None), ("completed", "success")]
    assert single.history("solstice/broken") == [("queued", None), ("in_progress", None), ("completed", "failure")]
    for name, job_id in (("solstice/build", build_id), ("solstice/broken", broken_id)):
        run = runs[name]
        assert run["head_sha"] == single.sha
        assert run["external_id"] == job_id
        assert run["details_url"] == f"{single.node.url}/jobs/{job_id}"
        # the link is real: serve's own page for the job
        page_status, page = await asyncio.to_thread(single.node.get, f"/jobs/{job_id}")
        assert page_status == 200 and job_id in page
    broken = runs["solstice/broken"]["output"]
    assert broken["title"] == "Failed: step 'Fail' exited with 3"
    assert "| Prepare | succeeded |" in broken["summary"] and "| Fail | failed |" in broken["summary"]
    assert "boom" in broken["summary"]  # the failing step's last log lines
    assert (await single.job(build_id))["state"] == "succeeded"
    log_status, log = await asyncio.to_thread(single.node.get, f"/jobs/{build_id}/log")
    assert log_status == 200 and "building commit-under-test\n" in log  # the runner checked out the commit
    # the forge redelivers the same delivery: nothing new runs
    status, answer = await single.deliver_github("push", single.payload("github/push.new-branch"), delivery="e2e-1")
    assert (status, answer["result"]) == (200, "duplicate delivery")
    assert sorted(job["job_id"] for job in await single.jobs()) == sorted([build_id, broken_id])


async def test_forgejo_push_runs_the_jobs_and_reports_commit_statuses(single: Single):
    single.forgejo.put_file(FJ_REPO, single.sha, WORKFLOW)
    status, answer = await single.deliver_forgejo("push", single.payload("forgejo/push"))
    assert status == 202 and answer["result"] == "queued", answer
    build_id, broken_id = answer["jobs"]

    def final(context: str) -> str:
        states = single.forgejo.statuses_of(context)
        return states[-1] if states and states[-1] != "pending" else ""

    await wait_for(lambda: final("solstice/build") and final("solstice/broken"), "both final commit statuses")
    for context, job_id, end in (("solstice/build", build_id, "success"), ("solstice/broken", broken_id, "failure")):
        states = single.forgejo.statuses_of(context)
        assert states[0] == "pending" and set(states[:-1]) == {"pending"} and states[-1] == end, states
        for repo, sha, body in single.forgejo.statuses:
            if body["context"] == context:
                assert (repo, sha) == (FJ_REPO, single.sha)
                assert body["target_url"] == f"{single.node.url}/jobs/{job_id}"
    [failed] = [b for _, _, b in single.forgejo.statuses
                if b["context"] == "solstice/broken" and b["state"] == "failure"]
    assert failed["description"] == "Failed: step 'Fail' exited with 3"
    assert (await single.job(build_id))["state"] == "succeeded"
    assert (await single.job(broken_id))["state"] == "failed"
    assert single.github.calls == []  # a Forgejo build talks to Forgejo only


async def test_invalid_workflow_ends_as_a_failed_check_with_the_error_positions(single: Single):
    single.github.put_file(GH_REPO, single.sha, INVALID)
    single.forgejo.put_file(FJ_REPO, single.sha, INVALID)
    status, answer = await single.deliver_github("push", single.payload("github/push.new-branch"))
    assert (status, answer["result"]) == (200, "invalid workflow"), answer
    status, answer = await single.deliver_forgejo("push", single.payload("forgejo/push"))
    assert (status, answer["result"]) == (200, "invalid workflow"), answer

    [check] = single.github.check_runs.values()
    assert (check["name"], check["head_sha"]) == ("Solstice workflow", single.sha)
    assert (check["status"], check["conclusion"]) == ("completed", "failure")
    summary = check["output"]["summary"]
    assert ".solstice/workflow.kdl:3:" in summary and "rnu" in summary
    assert ".solstice/workflow.kdl:5:" in summary
    annotations = check["output"]["annotations"]
    assert {a["start_line"] for a in annotations} >= {3, 5}
    assert all(a["path"] == ".solstice/workflow.kdl" and a["annotation_level"] == "failure" for a in annotations)

    [(repo, sha, body)] = single.forgejo.statuses
    assert (repo, sha, body["state"], body["context"]) == (FJ_REPO, single.sha, "failure", "solstice/workflow")
    assert ".solstice/workflow.kdl:3:" in body["description"]
    assert await single.jobs() == []  # nothing ran


async def test_closing_the_pull_request_cancels_its_running_job(single: Single):
    single.github.put_file(GH_REPO, single.sha, SLOW)
    status, answer = await single.deliver_github("pull_request", single.payload("github/pull_request.opened"))
    assert status == 202 and answer["result"] == "queued", answer
    [job_id] = answer["jobs"]
    await wait_for(lambda: ("in_progress", None) in single.history("solstice/slow"), "the job to be running")

    status, answer = await single.deliver_github("pull_request", single.payload("github/pull_request.closed"))
    assert (status, answer["result"]) == (202, "cancel requested"), answer
    assert "1 job(s) reached" in answer["detail"]
    await wait_for(lambda: ("completed", "cancelled") in single.history("solstice/slow"), "the cancelled check run")
    assert single.history("solstice/slow") == [("queued", None), ("in_progress", None), ("completed", "cancelled")]
    job = await single.job(job_id)
    assert job["state"] == "cancelled"


async def test_a_checks_api_outage_does_not_stop_the_job_and_the_check_catches_up(single: Single):
    single.github.put_file(GH_REPO, single.sha, BUILD_ONLY)
    single.github.fail_next(10**6, status=503, path_contains="/check-runs")
    status, answer = await single.deliver_github("push", single.payload("github/push.new-branch"))
    assert status == 202, answer
    [job_id] = answer["jobs"]

    async def finished() -> bool:
        return (await single.job(job_id))["state"] == "succeeded"

    await wait_for(finished, "the job to succeed while GitHub's Checks API is down")
    assert single.github.check_runs == {}
    assert any(c.status == 503 and "/check-runs" in c.path for c in single.github.calls)  # it did try
    single.github.faults.clear()  # GitHub is back: the requeued events are reported
    await wait_for(lambda: single.check_runs().get("solstice/build", {}).get("conclusion"), "the check run to catch up")
    [run] = single.github.check_runs.values()
    assert (run["status"], run["conclusion"], run["external_id"]) == ("completed", "success", job_id)


async def test_a_push_during_a_github_outage_is_built_once_github_is_back(single: Single):
    """GitHub does not redeliver failed webhooks: the build waits in serve's store, not in GitHub's."""
    single.github.put_file(GH_REPO, single.sha, BUILD_ONLY)
    single.github.fail_next(10**6, status=502, path_contains="/contents/")
    status, answer = await single.deliver_github("push", single.payload("github/push.new-branch"))
    assert (status, answer["result"]) == (202, "deferred"), answer
    await wait_for(lambda: len([c for c in single.github.calls if "/contents/" in c.path]) > 4,
                   "background retries against the failing contents API")
    assert await single.jobs() == []
    single.github.faults.clear()
    await wait_for(lambda: single.check_runs().get("solstice/build", {}).get("conclusion"),
                   "the deferred build's check")
    assert single.history("solstice/build") == [("queued", None), ("in_progress", None), ("completed", "success")]
    [job] = await single.jobs()
    assert job["state"] == "succeeded"


async def test_an_admin_submitted_job_is_never_reported_to_the_forge(single: Single):
    # The request issue 13 sent by hand: a GitHub checkout, trusted, claiming to come from a webhook.
    installation = single.payload("github/push.new-branch")["installation"]["id"]
    forged = jobs_pb2.JobRequest(
        schema_version=jobs_pb2.SCHEMA_VERSION_1, job_id=f"job-{uuid.uuid4().hex}", run_id=f"run-{uuid.uuid4().hex}",
        key="forged", name="forged", runs_on="illumos-stable", trusted=True, origin="github push",
        source=jobs_pb2.JOB_SOURCE_FORGE, submitted_by="integration",
        checkout=jobs_pb2.Checkout(forge="github", repo=GH_REPO, clone_url=str(single.repo), ref="refs/heads/master",
                                   sha=single.sha, installation_id=installation),
        steps=[jobs_pb2.Step(name="Build", run="cat marker.txt")])
    async with AdminClient(single.node.admin) as admin:
        [queued] = await admin.submit([forged])
    assert (queued.source, queued.submitted_by) == (jobs_pb2.JOB_SOURCE_ADMIN, "local")

    async def ran() -> dict[str, Any] | None:
        job = await single.job(forged.job_id)
        return job if job["state"] == "succeeded" else None
    job = await wait_for(ran, "the admin-submitted job to succeed")
    assert (job["source"], job["submitted_by"]) == ("admin", "local")
    status, page = await asyncio.to_thread(single.node.get, f"/jobs/{forged.job_id}")
    assert status == 200 and "submitted by operator local through AdminService" in page

    # A webhook build after it is reported: by then the reporter has seen the admin job's events too.
    single.github.put_file(GH_REPO, single.sha, BUILD_ONLY)
    status, answer = await single.deliver_github("push", single.payload("github/push.new-branch"))
    assert status == 202, answer
    await wait_for(lambda: single.check_runs().get("solstice/build", {}).get("conclusion"),
                   "the webhook build's report")
    assert [run["external_id"] for run in single.github.check_runs.values()] == answer["jobs"]
    assert not any(forged.job_id in (c.path + json.dumps(c.body)) for c in single.github.calls)
    assert single.forgejo.calls == []


async def test_greenness_follows_the_node_s_job_events_to_last_green_and_a_hook(tmp_path: Path, fixtures_dir: Path,
                                                                                app_key: tuple[bytes, bytes]):
    """Greenness on in ``solstice serve``: the node's job events reach it, the commit turns green (the failing
    job is not required), the API says so and the command hook hears of it."""
    heard = tmp_path / "hook.txt"
    hook = f"import os; open({str(heard)!r}, 'a').write(os.environ['SOLSTICE_STATE'] + ' ' + os.environ['SOLSTICE_COMMIT'])"
    config = CONFIG + f"""\
greenness:
  enabled: true
  hook_interval: 0.1
  hooks:
    record: {{command: [{json.dumps(sys.executable)}, "-c", {json.dumps(hook)}]}}
"""
    async with single_node(tmp_path, fixtures_dir, app_key, config=config) as single:
        single.forgejo.put_file(FJ_REPO, single.sha, WORKFLOW.replace('job id="broken" runs_on="illumos-stable"',
                                                                     'job id="broken" runs_on="illumos-stable" required=false'))
        status, answer = await single.deliver_forgejo("push", single.payload("forgejo/push"))
        assert status == 202 and answer["result"] == "queued", answer
        await wait_for(lambda: heard.exists() and heard.read_text(), "the hook to hear of the green commit")
        assert heard.read_text() == f"green {single.sha}"
        async with single.client.get(f"{single.node.url}/api/v1/queues/forgejo/{FJ_REPO}/develop/last-green") as got:
            doc = await got.json()
        assert doc["last_green"]["sha"] == single.sha and doc["green"] and doc["head"]["degree"] == 0.0
        assert (await single.job(answer["jobs"][1]))["state"] == "failed"  # it ran, it does not count
