"""Reading the workflow at the exact commit through each forge's API, and what an invalid one becomes."""

from __future__ import annotations

import time

import jwt
import pytest

from integration.errors import ForgeAuthError
from integration.forges.github_app import JWT_LIFETIME
from tests.integration.stack import APP_ID, FORGEJO_TOKEN, INVALID, WORKFLOW, IntegrationStack, RabbitQueue

GH_REPO = "Codertocat/Hello-World"
GH_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
FJ_REPO = "gitea/webhooks"
FJ_SHA = "bffeb74224043ba2feb48d137756c8a9331c449a"


async def test_invalid_workflow_becomes_a_failed_check_with_positions(stack: IntegrationStack, queue: RabbitQueue,
                                                                      payload):
    stack.github.put_file(GH_REPO, GH_SHA, INVALID)
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert status == 200 and answer["result"] == "invalid workflow"
    assert await queue.count() == 0
    [(run_id, body)] = stack.github.check_run_updates
    assert body["name"] == "Solstice workflow"
    assert body["head_sha"] == GH_SHA
    assert (body["status"], body["conclusion"]) == ("completed", "failure")
    summary = body["output"]["summary"]
    # every error with FILE:LINE:COL, as the validator wrote it
    assert ".solstice/workflow.kdl:3:" in summary and "rnu" in summary
    assert ".solstice/workflow.kdl:5:" in summary
    lines = sorted(a["start_line"] for a in body["output"]["annotations"])
    assert 3 in lines and 5 in lines
    assert all(a["path"] == ".solstice/workflow.kdl" for a in body["output"]["annotations"])


async def test_invalid_workflow_becomes_a_failed_forgejo_status(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, INVALID)
    status, answer = await stack.deliver_forgejo("push", payload("forgejo/push"))
    assert status == 200 and answer["result"] == "invalid workflow"
    [(repo, sha, body)] = stack.forgejo.statuses
    assert (repo, sha, body["state"], body["context"]) == (FJ_REPO, FJ_SHA, "failure", "solstice/workflow")
    assert ".solstice/workflow.kdl:3:" in body["description"]
    assert await queue.count() == 0


async def test_kdl_syntax_error_is_reported_too(stack: IntegrationStack, payload):
    stack.github.put_file(GH_REPO, GH_SHA, 'workflow {\n  job id="x" runs_on="a" {\n')
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert answer["result"] == "invalid workflow"
    [(_, body)] = stack.github.check_run_updates
    assert ".solstice/workflow.kdl:" in body["output"]["summary"]


async def test_installation_token_is_fetched_once_and_reused(stack: IntegrationStack, queue: RabbitQueue, payload):
    for sha in ("a" * 40, "b" * 40, "c" * 40):
        body = payload("github/push.new-branch")
        body["after"] = sha
        stack.github.put_file(GH_REPO, sha, WORKFLOW)
        status, _ = await stack.deliver_github("push", body)
        assert status == 202
    token_calls = stack.github.calls_to("POST", "/access_tokens")
    assert len(token_calls) == 1
    assert token_calls[0].path == "/app/installations/1/access_tokens"
    # the App JWT: RS256, iss = App id, at most 10 minutes of life
    app_jwt = token_calls[0].headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(app_jwt, stack.github.public_key, algorithms=["RS256"])
    assert claims["iss"] == APP_ID
    assert claims["exp"] - claims["iat"] <= 600 + 60
    assert claims["exp"] - time.time() <= JWT_LIFETIME + 1
    # every contents call used the installation token, not the JWT
    contents = stack.github.calls_to("GET", "/contents/")
    assert len(contents) == 3
    assert all(c.headers["Authorization"].startswith("token ghs_") for c in contents)
    assert len(await queue.take()) == 3


async def test_expired_installation_token_is_replaced(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.github.token_lifetime = 200  # "expires in 200 s": already inside the 300 s refresh margin
    body = payload("github/push.new-branch")
    assert (await stack.deliver_github("push", body))[0] == 202
    body["after"] = "d" * 40
    stack.github.put_file(GH_REPO, "d" * 40, WORKFLOW)
    assert (await stack.deliver_github("push", body))[0] == 202
    assert len(stack.github.calls_to("POST", "/access_tokens")) == 2


async def test_revoked_token_is_refreshed_once(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    body = payload("github/push.new-branch")
    body["after"] = "e" * 40
    stack.github.put_file(GH_REPO, "e" * 40, WORKFLOW)
    assert (await stack.deliver_github("push", body))[0] == 202
    stack.github.tokens.clear()  # GitHub revoked every token
    assert (await stack.deliver_github("push", payload("github/push.new-branch")))[0] == 202
    assert len(stack.github.calls_to("POST", "/access_tokens")) == 2
    assert len(await queue.take()) == 2


async def test_forgejo_calls_carry_the_token(stack: IntegrationStack, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    await stack.deliver_forgejo("push", payload("forgejo/push"))
    [call] = stack.forgejo.calls
    assert call.headers["Authorization"] == f"token {FORGEJO_TOKEN}"
    assert call.path == f"/api/v1/repos/{FJ_REPO}/contents/.solstice/workflow.kdl"
    assert call.query == {"ref": FJ_SHA}


async def test_wrong_forgejo_token_is_not_retried(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    stack.forgejo.token = "rotated"
    status, answer = await stack.deliver_forgejo("push", payload("forgejo/push"))
    assert status == 502 and "token is required" in answer["detail"]
    assert len(stack.forgejo.calls) == 1  # a 4xx is not retried
    assert await queue.count() == 0


def test_missing_app_id_is_a_clear_error(tmp_path):
    from integration.forges.github_app import GitHubAppAuth, read_private_key

    with pytest.raises(ForgeAuthError, match="SOLSTICE_GITHUB_APP_ID"):
        GitHubAppAuth(None, "http://x", "", b"")  # type: ignore[arg-type]
    (tmp_path / "k.pem").write_text("not a key")
    with pytest.raises(ForgeAuthError, match="not a PEM private key"):
        read_private_key(tmp_path / "k.pem")
    with pytest.raises(ForgeAuthError, match="cannot read"):
        read_private_key(tmp_path / "missing.pem")


async def test_many_errors_fit_githubs_limits(stack: IntegrationStack, queue: RabbitQueue, payload):
    """60 errors: at most 50 annotations per request (GitHub's cap), the rest in an update; all in the summary."""
    text = "workflow {\n" + "".join(
        f'  job id="j{i}" runs_on="illumos-stable" {{\n    step run="true" bogus=1\n  }}\n' for i in range(60)
    ) + "}\n"
    stack.github.put_file(GH_REPO, GH_SHA, text)
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert answer["result"] == "invalid workflow"
    # a create with 50 annotations, then an update with the other 10 (each accepted by the schema-checking fake)
    [(run_id, created), (same_id, updated)] = stack.github.check_run_updates
    assert run_id == same_id
    assert [len(body["output"]["annotations"]) for body in (created, updated)] == [50, 10]
    assert (created["status"], created["conclusion"]) == ("completed", "failure")
    output = created["output"]
    assert output["title"] == "Invalid workflow: 60 errors"
    assert ".solstice/workflow.kdl:3:21:" in output["summary"]
    assert ".solstice/workflow.kdl:180:21:" in output["summary"]  # every error in the summary too
    assert [a["start_line"] for a in stack.github.annotations[run_id]] == [3 + 3 * i for i in range(60)]
    assert await queue.count() == 0


def test_workflow_error_summary_is_cut_to_githubs_limit():
    from common.workflow import WorkflowError
    from integration.reporting.summary import SUMMARY_LIMIT, workflow_errors_summary

    errors = tuple(
        WorkflowError(".solstice/workflow.kdl", i, 1, "job", "x" * 500) for i in range(1, 400)
    )  # ~200 KB of errors
    text = workflow_errors_summary(errors)
    assert len(text) <= SUMMARY_LIMIT
    assert text.startswith("The workflow file has 399 errors:")
    assert text.endswith("\n```")  # the code block is closed even when cut
