"""The fake forges are strict: every request body is checked, auth is checked as the forge does.

If the fakes accepted anything, the reporter tests would prove nothing; here
each kind of bad request is sent straight to them and must be refused
without being recorded.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from tests.fakes.forges import FakeGitHub, rsa_key_pair

APP_ID = "31337"
REPO = "Codertocat/Hello-World"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
UA = {"User-Agent": "solstice-test"}


@pytest.fixture
async def github(fixtures_dir: Path, app_key: tuple[bytes, bytes]) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(fixtures=fixtures_dir / "forge" / "github", app_id=APP_ID, public_key=app_key[1]) as fake:
        yield fake


def app_jwt(key: bytes, app_id: str = APP_ID, lifetime: int = 540) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now - 60, "exp": now + lifetime, "iss": app_id}, key, algorithm="RS256")


async def call(http: aiohttp.ClientSession, method: str, url: str, *, token: str = "", body: Any = None,
               raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    sent = {**UA, **(headers or {})}
    if token:
        sent["Authorization"] = token
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with http.request(method, url, data=data, headers=sent) as answer:
        text = await answer.text()
        return answer.status, json.loads(text) if text else None


async def installation_token(http: aiohttp.ClientSession, github: FakeGitHub, key: bytes) -> str:
    status, answer = await call(http, "POST", f"{github.url}/app/installations/1/access_tokens",
                                token=f"Bearer {app_jwt(key)}")
    assert status == 201, answer
    return f"token {answer['token']}"


def check_run(**fields: Any) -> dict[str, Any]:
    return {"name": "solstice/build", "head_sha": SHA, **fields}


BAD_CHECK_RUNS = {
    "no head_sha": {"name": "solstice/build"},
    "empty name": check_run(name=""),
    "completed without conclusion": check_run(status="completed"),
    "completed_at without conclusion": check_run(completed_at="2026-11-25T10:00:00Z"),
    "unknown status": check_run(status="running"),
    "GitHub-only conclusion": check_run(status="completed", conclusion="stale"),
    "bad date-time": check_run(started_at="yesterday"),
    "summary over 65535": check_run(output={"title": "t", "summary": "x" * 65536}),
    "output without summary": check_run(output={"title": "t"}),
    "51 annotations": check_run(output={"title": "t", "summary": "s", "annotations": [
        {"path": "a", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "m"}] * 51}),
    "bad annotation level": check_run(output={"title": "t", "summary": "s", "annotations": [
        {"path": "a", "start_line": 1, "end_line": 1, "annotation_level": "error", "message": "m"}]}),
    "4 actions": check_run(actions=[{"label": "Re-run", "description": "d", "identifier": f"r{i}"} for i in range(4)]),
    "action label over 20": check_run(actions=[{"label": "L" * 21, "description": "d", "identifier": "r"}]),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECK_RUNS))
async def test_github_refuses_check_runs_outside_the_schema(case, github, http, app_key):
    token = await installation_token(http, github, app_key[0])
    status, answer = await call(http, "POST", f"{github.url}/repos/{REPO}/check-runs", token=token,
                                body=BAD_CHECK_RUNS[case])
    assert status == 422, (case, answer)
    assert github.check_runs == {}


async def test_github_accepts_a_valid_check_run_and_checks_updates(github, http, app_key):
    token = await installation_token(http, github, app_key[0])
    status, created = await call(http, "POST", f"{github.url}/repos/{REPO}/check-runs", token=token,
                                 body=check_run(status="queued", details_url="http://ci/jobs/1"))
    assert status == 201 and created["id"] in github.check_runs
    url = f"{github.url}/repos/{REPO}/check-runs/{created['id']}"
    assert (await call(http, "PATCH", url, token=token, body={"status": "completed"}))[0] == 422
    done = {"status": "completed", "conclusion": "success"}
    assert (await call(http, "PATCH", url, token=token, body=done))[0] == 200
    assert (await call(http, "PATCH", f"{github.url}/repos/{REPO}/check-runs/1", token=token,
                       body={"status": "in_progress"}))[0] == 404
    assert github.check_run_statuses() == [(created["id"], "queued", None), (created["id"], "completed", "success")]


async def test_github_commit_status_description_is_capped_at_140(github, http, app_key):
    token = await installation_token(http, github, app_key[0])
    url = f"{github.url}/repos/{REPO}/statuses/{SHA}"
    assert (await call(http, "POST", url, token=token, body={"state": "success", "description": "d" * 141}))[0] == 422
    assert (await call(http, "POST", url, token=token, body={"state": "warning"}))[0] == 422
    assert (await call(http, "POST", url, token=token, body={"state": "success", "description": "d" * 140}))[0] == 201
    assert len(github.statuses) == 1


async def test_github_auth_is_checked_as_github_does(github, http, app_key):
    tokens = f"{github.url}/app/installations/1/access_tokens"
    other_key = rsa_key_pair()[0]
    assert (await call(http, "POST", tokens, token=f"Bearer {app_jwt(other_key)}"))[0] == 401  # not the App's key
    assert (await call(http, "POST", tokens, token=f"Bearer {app_jwt(app_key[0], '1')}"))[0] == 401  # other App
    assert (await call(http, "POST", tokens, token=f"Bearer {app_jwt(app_key[0], lifetime=900)}"))[0] == 401
    assert (await call(http, "POST", tokens, token=f"token {app_jwt(app_key[0])}"))[0] == 401
    assert (await call(http, "POST", tokens, token=f"Bearer {app_jwt(app_key[0])}",
                       body={"repository": "Hello-World"}))[0] == 422  # the token request body is checked too
    status, _ = await call(http, "POST", tokens, token=f"Bearer {app_jwt(app_key[0])}",
                           body={"repositories": ["Hello-World"], "permissions": {"checks": "write"}})
    assert status == 201
    token = await installation_token(http, github, app_key[0])
    contents = f"{github.url}/repos/{REPO}/contents/.solstice/workflow.kdl?ref={SHA}"
    github.put_file(REPO, SHA, "workflow {}")
    async with http.get(contents, headers={"Authorization": token}, skip_auto_headers=["User-Agent"]) as answer:
        assert answer.status == 403  # GitHub refuses calls without a User-Agent
    assert (await call(http, "GET", contents, token=token))[0] == 200
    assert (await call(http, "GET", contents, token=f"Bearer {app_jwt(app_key[0])}"))[0] == 401  # JWT is not a token
    for held in list(github.tokens):
        github.tokens[held] = (github.tokens[held][0], time.time() - 1)  # every token expired
    assert (await call(http, "GET", contents, token=token))[0] == 401


async def test_bodies_that_are_not_json_or_not_expected_are_refused(github, forgejo, http, app_key):
    token = await installation_token(http, github, app_key[0])
    status, answer = await call(http, "POST", f"{github.url}/repos/{REPO}/check-runs", token=token, raw=b"{name:")
    assert (status, answer["message"]) == (400, "Problems parsing JSON")
    assert (await call(http, "POST", f"{github.url}/repos/{REPO}/check-runs", token=token))[0] == 422  # no body
    github.put_file(REPO, SHA, "workflow {}")
    status, _ = await call(http, "GET", f"{github.url}/repos/{REPO}/contents/.solstice/workflow.kdl?ref={SHA}",
                           token=token, body={"ref": SHA})
    assert status == 400  # a GET takes no body
    status, _ = await call(http, "POST", f"{forgejo.url}/api/v1/repos/gitea/webhooks/statuses/{SHA}",
                           token="token fj-token", raw=b"state=success")
    assert status == 400
    assert github.check_runs == {} and forgejo.statuses == []


async def test_forgejo_statuses_follow_create_status_option(forgejo, http):
    url = f"{forgejo.url}/api/v1/repos/gitea/webhooks/statuses/{SHA}"
    good = {"state": "pending", "context": "solstice/build", "target_url": "http://ci/jobs/1", "description": "d"}
    assert (await call(http, "POST", url, body=good))[0] == 401  # no token
    assert (await call(http, "POST", url, token="token wrong", body=good))[0] == 401
    assert (await call(http, "POST", url, token="token fj-token", body={**good, "state": "running"}))[0] == 422
    assert (await call(http, "POST", url, token="token fj-token", body={**good, "colour": "x"}))[0] == 422
    assert (await call(http, "POST", url, token="token fj-token", body={"context": "c"}))[0] == 422  # no state
    assert forgejo.statuses == []
    assert (await call(http, "POST", url, token="token fj-token", body=good))[0] == 201
    assert forgejo.statuses == [("gitea/webhooks", SHA, good)]


async def test_contents_answer_in_each_forges_format(github, forgejo, http, app_key):
    text = 'workflow name="é" {\n}\n'
    github.put_file(REPO, SHA, text)
    forgejo.put_file("gitea/webhooks", SHA, text)
    token = await installation_token(http, github, app_key[0])
    status, answer = await call(http, "GET", f"{github.url}/repos/{REPO}/contents/.solstice/workflow.kdl?ref={SHA}",
                                token=token)
    assert status == 200 and answer["type"] == "file" and answer["encoding"] == "base64"
    assert base64.b64decode(answer["content"]).decode() == text
    status, _ = await call(http, "GET", f"{github.url}/repos/{REPO}/contents/.solstice/workflow.kdl?ref={'0' * 40}",
                           token=token)
    assert status == 404  # only at the commit it was put at
    status, answer = await call(
        http, "GET", f"{forgejo.url}/api/v1/repos/gitea/webhooks/contents/.solstice/workflow.kdl?ref={SHA}",
        token="token fj-token")
    assert status == 200 and base64.b64decode(answer["content"]).decode() == text
