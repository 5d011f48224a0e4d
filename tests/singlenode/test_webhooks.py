"""A forge webhook into a real ``solstice serve``, the job run by the local driver, the result back on the forge."""

from __future__ import annotations

import asyncio
import copy
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration.signature import sign
from tests.fakes.forges import FakeGitHub, rsa_key_pair
from tests.singlenode.harness import ServeProcess, git, git_repo
from tests.waiting import async_wait_until

SECRET = "single-node-webhook-secret"
APP_ID = "4711"
REPO = "Codertocat/Hello-World"
WORKFLOW = """\
workflow name="webhook" {
  job id="check" runs_on="illumos-stable" {
    step name="Say" run="echo built by a webhook"
  }
}
"""


@pytest.fixture
async def github(fixtures_dir: Path) -> AsyncIterator[tuple[FakeGitHub, bytes]]:
    private, public = rsa_key_pair()
    async with FakeGitHub(fixtures=fixtures_dir / "forge" / "github", app_id=APP_ID, public_key=public) as fake:
        yield fake, private


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def github_headers(event: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The headers of one GitHub delivery of ``body``, signed with ``secret``."""
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd", "X-Hub-Signature-256": "sha256=" + sign(secret, body)}


def served_repo(tmp_path: Path, github: tuple[FakeGitHub, bytes], workflow: str) -> tuple[Path, str, dict[str, str]]:
    """A repository holding ``workflow`` at HEAD (served by the fake GitHub too), its sha, and the env
    of a node that takes that GitHub's webhooks."""
    fake, private = github
    key = tmp_path / "app.pem"
    key.write_bytes(private)
    repo = git_repo(tmp_path / "repo", workflow)
    sha = git(repo, "rev-parse", "HEAD")
    fake.put_file(REPO, sha, workflow)
    env = {
        "SOLSTICE_GITHUB_WEBHOOK_SECRET": SECRET, "SOLSTICE_GITHUB_APP_ID": APP_ID,
        "SOLSTICE_GITHUB_PRIVATE_KEY_FILE": str(key), "SOLSTICE_GITHUB_API_URL": fake.url,
    }
    return repo, sha, env


def concluded(fake: FakeGitHub) -> dict | None:
    """The first check run with a conclusion, if any."""
    return next((run for run in fake.check_runs.values() if run.get("conclusion")), None)


async def test_push_webhook_runs_the_job_and_reports_a_check_run(tmp_path: Path, fixtures_dir: Path,
                                                                  github: tuple[FakeGitHub, bytes]) -> None:
    fake = github[0]
    repo, sha, env = served_repo(tmp_path, github, WORKFLOW)
    payload = json.loads((fixtures_dir / "forge" / "github" / "push.new-branch.json").read_text())
    payload = copy.deepcopy(payload)
    payload["after"] = sha
    if payload.get("head_commit"):
        payload["head_commit"]["id"] = sha
    payload["repository"]["clone_url"] = str(repo)  # the runner fetches from here
    body = json.dumps(payload).encode()
    node = ServeProcess(tmp_path / "data", env=env)
    await asyncio.to_thread(node.start)
    try:
        status, answer = await asyncio.to_thread(
            post, f"{node.url}/webhooks/github", body, github_headers("push", body, secret="bad"))
        assert status == 401
        status, answer = await asyncio.to_thread(
            post, f"{node.url}/webhooks/github", body, github_headers("push", body))
        assert status == 202 and answer["result"] == "queued", answer
        [job_id] = answer["jobs"]

        check = await async_wait_until(lambda: concluded(fake), timeout=90, what="a concluded check run")
        assert check["conclusion"] == "success" and check["head_sha"] == sha
        assert check["details_url"] == f"{node.url}/jobs/{job_id}"
        job = await asyncio.to_thread(node.status, job_id)
        assert job["state"] == "succeeded" and job["driver"] == "local"
        status_code, log = await asyncio.to_thread(node.get, f"/jobs/{job_id}/log")
        assert status_code == 200 and "built by a webhook\n" in log

        # GitHub's "Re-run" on the job's check run: a new attempt of that job.
        rerun = json.loads((fixtures_dir / "forge" / "github" / "check_run.rerequested.json").read_text())
        rerun["check_run"]["external_id"] = job_id
        rerun["check_run"]["head_sha"] = sha
        rerun["repository"] = payload["repository"]
        rerun_body = json.dumps(rerun).encode()
        status, answer = await asyncio.to_thread(
            post, f"{node.url}/webhooks/github", rerun_body, github_headers("check_run", rerun_body))
        assert status == 202 and answer["result"] == "retry requested", answer
        again = await asyncio.to_thread(node.wait_state, job_id, "succeeded")
        assert again["attempt"] == 2
        rerun["check_run"]["external_id"] = "job-" + "0" * 32  # not a job of this node
        rerun_body = json.dumps(rerun).encode()
        status, answer = await asyncio.to_thread(
            post, f"{node.url}/webhooks/github", rerun_body, github_headers("check_run", rerun_body))
        assert status == 202 and answer["result"] == "retry refused", answer
    finally:
        code = await asyncio.to_thread(node.stop)
    assert code == 0, node.output()
    assert SECRET not in node.output()


SLOW = """\
workflow name="pr" {
  job id="slow" runs_on="illumos-stable" {
    step name="Wait" run="echo waiting for the PR; sleep 120"
  }
}
"""


async def test_closing_the_pull_request_cancels_its_running_job(tmp_path: Path, fixtures_dir: Path,
                                                                github: tuple[FakeGitHub, bytes]) -> None:
    fake = github[0]
    repo, sha, env = served_repo(tmp_path, github, SLOW)

    def event(name: str) -> bytes:
        payload = json.loads((fixtures_dir / "forge" / "github" / f"pull_request.{name}.json").read_text())
        payload["pull_request"]["head"]["sha"] = sha
        payload["repository"]["clone_url"] = str(repo)
        return json.dumps(payload).encode()

    node = ServeProcess(tmp_path / "data", env=env)
    await asyncio.to_thread(node.start)
    try:
        def deliver(body: bytes) -> tuple[int, dict]:
            return post(f"{node.url}/webhooks/github", body, github_headers("pull_request", body))

        status, answer = await asyncio.to_thread(deliver, event("opened"))
        assert status == 202 and answer["result"] == "queued", answer
        [job_id] = answer["jobs"]

        async def waiting() -> bool:
            status_code, text = await asyncio.to_thread(node.get, f"/jobs/{job_id}/log")
            return status_code == 200 and "waiting for the PR" in text

        await async_wait_until(waiting, timeout=60, what="the PR's job to run")
        status, answer = await asyncio.to_thread(deliver, event("closed"))
        assert status == 202 and answer["result"] == "cancel requested", answer
        assert "1 job(s) reached" in answer["detail"]
        job = await asyncio.to_thread(node.wait_state, job_id, "cancelled")
        assert "pull request #2 was closed" in job["reason"]

        check = await async_wait_until(lambda: concluded(fake), timeout=60, what="the check run to conclude")
        assert check["conclusion"] == "cancelled"
    finally:
        code = await asyncio.to_thread(node.stop)
    assert code == 0, node.output()
