"""Bad input at the webhooks: a 4xx naming the field, or a failed check naming the problem; nothing queued,
no forge call outside ``/repos/<owner>/<name>/``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from integration.errors import UnsafeForgeUrl
from integration.events import Forge, Repo
from integration.forges.forgejo_api import CommitStatus
from integration.forges.github_api import CheckRun
from integration.settings import WebhookSettings
from tests.integration.stack import WORKFLOW, IntegrationStack, RabbitQueue

GH_REPO = "Codertocat/Hello-World"
GH_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
FJ_REPO = "gitea/webhooks"
FJ_SHA = "bffeb74224043ba2feb48d137756c8a9331c449a"
EVIL_SHA = "../../../../admin/evil"


def _at(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, name = path.split(".")
        for part in parents:
            body = body[part]
        body[name] = value
    return change


# (fixture, event, change, the field the 400 must name)
BAD_FIELDS = [
    ("github/push.new-branch", "push", _at("after", EVIL_SHA), "after"),
    ("github/push.new-branch", "push", _at("repository.full_name", GH_REPO + "?per_page=1"), "repository.full_name"),
    ("github/push.new-branch", "push", _at("repository.full_name", "Codertocat/.."), "repository.full_name"),
    ("github/push.new-branch", "push", _at("repository.clone_url", "ext::sh -c id"), "repository.clone_url"),
    ("github/push.new-branch", "push", _at("repository.clone_url", "file:///etc"), "repository.clone_url"),
    ("github/push.new-branch", "push", _at("installation.id", 2**64), "installation.id"),
    ("github/pull_request.opened", "pull_request", _at("pull_request.number", 2**31), "pull_request.number"),
    ("github/pull_request.opened", "pull_request", _at("pull_request.head.sha", EVIL_SHA), "pull_request.head.sha"),
    ("github/pull_request.opened", "pull_request", _at("pull_request.number", -2), "pull_request.number"),
]


def _outside_repo(calls, prefix: str) -> list[str]:
    return [c.raw_path for c in calls if not c.raw_path.startswith(prefix) and "/access_tokens" not in c.raw_path]


@pytest.mark.parametrize(("fixture", "event", "change", "field"), BAD_FIELDS,
                         ids=[f"{f.split('/')[1]}:{field}" for f, _, _, field in BAD_FIELDS])
async def test_an_invalid_field_is_400_naming_it_and_reaches_no_forge(
    stack: IntegrationStack, queue: RabbitQueue, payload, fixture, event, change, field,
):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    body = payload(fixture)
    change(body)
    status, answer = await stack.deliver_github(event, body)
    assert status == 400, answer
    assert field in answer["detail"]
    assert stack.github.calls == []
    assert await queue.count() == 0


async def test_forgejo_path_injection_is_refused_before_any_call(stack: IntegrationStack, queue: RabbitQueue, payload):
    for change in (_at("after", EVIL_SHA), _at("repository.full_name", "gitea/webhooks?token=x")):
        body = payload("forgejo/push")
        change(body)
        status, answer = await stack.deliver_forgejo("push", body)
        assert (status, answer["result"]) == (400, "invalid field"), answer
    assert stack.forgejo.calls == []
    assert await queue.count() == 0


async def test_json_nested_past_the_parser_is_400_naming_where(stack: IntegrationStack, queue: RabbitQueue):
    body = b'{"ref": "refs/heads/x", "pull_request": {"labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    status, answer = await stack.deliver_github("push", body)
    assert (status, answer["result"]) == (400, "malformed JSON")
    assert "nests deeper than the JSON parser allows" in answer["detail"]
    assert "at pull_request.labels[0][0]" in answer["detail"]
    assert stack.github.calls == [] and await queue.count() == 0


async def test_forge_urls_quote_every_segment(stack: IntegrationStack):
    """Even past the webhook checks, a value is one path segment: no ``..`` climbing, no injected query."""
    github, forgejo = stack.integration.github, stack.integration.forgejo
    assert github is not None and forgejo is not None
    gh_repo = Repo(Forge.GITHUB, GH_REPO + "?per_page=1#x", "https://github.com/x.git", installation_id=1)
    await github.create_check_run(gh_repo, CheckRun(name="solstice/x", head_sha=GH_SHA))
    assert await github.fetch_file(Repo(Forge.GITHUB, GH_REPO, "", 1), ".solstice/workflow.kdl", EVIL_SHA) is None
    fj_repo = Repo(Forge.FORGEJO, "gitea/webhooks?token=x", "")
    await forgejo.set_status(fj_repo, EVIL_SHA, CommitStatus("pending", "solstice/x"))
    assert [c.raw_path for c in stack.github.calls if "/access_tokens" not in c.raw_path] == [
        "/repos/Codertocat/Hello-World%3Fper_page=1%23x/check-runs",  # "=" is plain in a path
        "/repos/Codertocat/Hello-World/contents/.solstice/workflow.kdl",
    ]
    assert stack.github.calls[-1].query == {"ref": EVIL_SHA}
    assert [c.raw_path for c in stack.forgejo.calls] == [
        "/api/v1/repos/gitea/webhooks%3Ftoken=x/statuses/..%2F..%2F..%2F..%2Fadmin%2Fevil"]
    assert all(c.query == {} for c in stack.forgejo.calls)
    # '.' and '..' are not quoted by URL rules and would be resolved: refused, not sent
    before = len(stack.forgejo.calls)
    for repo, sha in ((Repo(Forge.FORGEJO, "gitea/..", ""), FJ_SHA), (Repo(Forge.FORGEJO, FJ_REPO, ""), "..")):
        with pytest.raises(UnsafeForgeUrl):
            await forgejo.set_status(repo, sha, CommitStatus("pending", "solstice/x"))
    assert len(stack.forgejo.calls) == before


@pytest.mark.parametrize("ref", ["refs/heads/feature+x", "refs/heads/fix-\u00fc", "refs/heads/a@b"])
async def test_a_branch_git_allows_but_solstice_cannot_fetch_is_a_failed_check(
    stack: IntegrationStack, queue: RabbitQueue, payload, ref,
):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    gh, fj = payload("github/push.new-branch"), payload("forgejo/push")
    gh["ref"] = fj["ref"] = ref
    status, answer = await stack.deliver_github("push", gh)
    assert (status, answer["result"]) == (422, "unbuildable ref"), answer
    assert "is not a ref Solstice can check out" in answer["detail"]
    [(_, check)] = stack.github.check_run_updates
    assert (check["head_sha"], check["conclusion"]) == (GH_SHA, "failure")
    assert check["output"]["title"] == f"Cannot build {ref}"
    assert "is not a ref Solstice can check out" in check["output"]["summary"]
    status, _ = await stack.deliver_forgejo("push", fj)
    assert status == 422
    [(repo, sha, body)] = stack.forgejo.statuses
    assert (repo, sha, body["state"], body["context"]) == (FJ_REPO, FJ_SHA, "failure", "solstice/workflow")
    assert body["description"].startswith(f"Cannot build {ref}: ")
    assert stack.github.calls_to("GET", "/contents/") == [] and stack.forgejo.calls_to("GET", "/contents/") == []
    assert await queue.count() == 0
    assert _outside_repo(stack.github.calls, f"/repos/{GH_REPO}/") == []


@pytest.mark.parametrize(("content", "problem"), [
    (b'workflow {\n  job id="b\xff" runs_on="x" {\n', ".solstice/workflow.kdl:2:12: file is not UTF-8 text"),
    (b"workflow {\n" + b"a {\n" * 3000 + b"}\n" * 3000 + b"}\n", "nodes nest too deeply"),
    (WORKFLOW.replace('run="cargo test --workspace"', 'run="' + "x" * 300_000 + '"').encode(),
     "the limit is 256 KiB (workflow_limits.max_file_bytes)"),
])
async def test_an_unreadable_workflow_is_an_invalid_workflow_check_not_a_retry(
    stack: IntegrationStack, queue: RabbitQueue, payload, content, problem,
):
    stack.github.put_file(GH_REPO, GH_SHA, content)
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert (status, answer["result"]) == (200, "invalid workflow"), answer
    [(_, check)] = stack.github.check_run_updates
    assert check["conclusion"] == "failure" and problem in check["output"]["summary"]
    assert await stack.integration.store.take_due(float("inf"), 60, 10) == []  # nothing deferred to re-fetch
    assert await queue.count() == 0


async def test_a_good_delivery_still_only_calls_inside_its_repository(
    stack: IntegrationStack, queue: RabbitQueue, payload,
):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    status, _ = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert status == 202
    assert stack.github.calls and _outside_repo(stack.github.calls, f"/repos/{GH_REPO}/") == []
    assert len(await queue.take()) == 1


async def test_an_approved_fork_pull_request_builds_the_approved_commit(
    tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue, payload,
):
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher,
                             webhooks=WebhookSettings(fork_policy="approval"))
    await stack.start()
    try:
        review = payload("github/pull_request_review.submitted.approved")
        review["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
        approved = review["review"]["commit_id"]
        stack.github.put_file(GH_REPO, approved, WORKFLOW)
        stale = json.loads(json.dumps(review))
        stale["pull_request"]["head"]["sha"] = "f" * 40  # pushed after the approval
        status, answer = await stack.deliver_github("pull_request_review", stale)
        assert (status, answer["result"]) == (202, "ignored") and "no longer its head" in answer["detail"]
        assert stack.github.calls == [] and await queue.count() == 0
        status, answer = await stack.deliver_github("pull_request_review", review)
        assert (status, answer["result"]) == (202, "queued"), answer
        [request] = await queue.take()
        assert (request.checkout.sha, request.checkout.ref, request.trusted) == (approved, "refs/pull/2/head", False)
    finally:
        await stack.close()
