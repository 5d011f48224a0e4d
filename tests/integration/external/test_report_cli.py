"""solstice-report as a downstream job runs it: the real console script, a results server, an Actions runtime."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from integration.external.allowlist import RepoKey
from integration.external.junit import JUnitUnreadable, read_junit
from integration.external.records import SuiteSummary
from tests.conftest import REPO_ROOT
from tests.fakes.oidc import FakeOidcIssuer
from tests.fakes.serving import serve_on_loopback
from tests.integration.external.conftest import AUDIENCE, SHA, UPSTREAM, ResultsServer

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="xpu" tests="6">
    <testcase classname="t" name="a"/>
    <testcase classname="t" name="b"/>
    <testcase classname="t" name="c"/>
    <testcase classname="t" name="d"><failure message="boom">trace</failure></testcase>
    <testcase classname="t" name="e"><skipped/></testcase>
    <testsuite name="nested"><testcase classname="t" name="f"><error message="x"/></testcase></testsuite>
  </testsuite>
</testsuites>
"""
BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<testsuite><testcase name="&lol2;"/></testsuite>
"""


def dispatch_event(tmp: Path, results_url: str, delivery: str = "github:d-1") -> Path:
    event = tmp / "event.json"
    event.write_text(json.dumps({"action": "solstice-upstream", "client_payload": {
        "schema_version": 1, "delivery_id": delivery,
        "upstream": {"forge": "github", "repo": UPSTREAM, "clone_url": "https://github.com/octo-org/octo-repo.git"},
        "event": "pull_request", "action": "opened", "sha": SHA, "ref": "refs/pull/7/head", "pr_number": 7,
        "from_fork": False, "results_url": results_url}}))
    return event


async def report(tmp: Path, issuer: FakeOidcIssuer, results_url: str, *args: str,
                 env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environment = {
        **os.environ, "GITHUB_EVENT_PATH": str(dispatch_event(tmp, results_url)), "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": "test",
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"{issuer.url}/token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": issuer.request_token, **(env or {}),
    }
    script = Path(sys.executable).with_name("solstice-report")
    process = await asyncio.create_subprocess_exec(
        str(script), *args, env=environment, cwd=tmp,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


def test_junit_counts_and_refuses_entity_tricks(tmp_path: Path):
    good = tmp_path / "a.xml"
    good.write_text(JUNIT)
    assert read_junit(good) == SuiteSummary(passed=3, failed=1, skipped=1, errors=1)
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(BOMB)
    with pytest.raises(JUnitUnreadable, match="refused for safety"):
        read_junit(bomb)


async def test_in_progress_then_completed_with_the_junit_counts(results: ResultsServer, issuer: FakeOidcIssuer,
                                                               tmp_path: Path):
    await results.dispatch("acme/l2-ci")
    issuer.claims_for_requests = {"repository": "acme/l2-ci"}
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "xpu.xml").write_text(JUNIT)
    url = results.url + "/api/v1/results"
    code, out, err = await report(tmp_path, issuer, url, "--status", "in_progress", "--audience", AUDIENCE)
    assert (code, err) == (0, "") and out.startswith("solstice-report: accepted (in_progress)")
    code, out, err = await report(tmp_path, issuer, url, "--status", "completed", "--conclusion", "failure",
                                  "--junit", "reports/**/*.xml", "--job-name", "Test on XPU", "--audience", AUDIENCE,
                                  "--artifact-url", "https://acme.example/runs/4242")
    assert code == 0, err
    assert "accepted (completed)" in out
    [stored] = await results.store.results_of_upstream(RepoKey.parse(UPSTREAM))
    assert (stored.status, stored.conclusion, stored.report.job_name) == ("completed", "failure", "Test on XPU")
    assert stored.report.tests == SuiteSummary(3, 1, 1, 1)
    assert issuer.token_requests == [AUDIENCE, AUDIENCE]
    # The same completed again: the server says 409, the step fails and says why.
    code, out, err = await report(tmp_path, issuer, url, "--status", "completed", "--conclusion", "success",
                                  "--audience", AUDIENCE)
    assert code == 1
    assert ("::error::solstice-report: rejected (HTTP 409): "
            "job 'test' of run 4242 attempt 1 was already completed") in err


async def test_server_trouble_warns_and_passes(issuer: FakeOidcIssuer, tmp_path: Path):
    calls = []

    async def down(request: web.Request) -> web.Response:
        calls.append(request.headers.get("Authorization", ""))
        return web.json_response({"result": "unavailable", "detail": "the store is down. Nothing was stored."},
                                 status=503, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_post("/api/v1/results", down)
    runner, url = await serve_on_loopback(app)
    issuer.claims_for_requests = {"repository": "acme/l2-ci"}
    try:
        code, out, err = await report(tmp_path, issuer, url + "/api/v1/results", "--status", "in_progress",
                                      "--retries", "1")
        assert code == 0, err
        assert "::warning::solstice-report: the results API is unavailable (HTTP 503)" in out
        assert len(calls) == 2 and all(c.startswith("Bearer ey") for c in calls)  # retried after Retry-After
        assert issuer.token_requests[0] == url  # the audience defaults to the results URL's server
    finally:
        await runner.cleanup()
    code, out, _ = await report(tmp_path, issuer, url + "/api/v1/results", "--status", "in_progress",
                                "--retries", "0")
    assert code == 0 and "unavailable (no answer)" in out


async def test_a_missing_setup_fails_the_step_with_one_error_line(issuer: FakeOidcIssuer, tmp_path: Path):
    code, _, err = await report(tmp_path, issuer, "https://ci.example/api/v1/results", "--status", "in_progress",
                                env={"ACTIONS_ID_TOKEN_REQUEST_URL": ""})
    assert code == 1
    assert err.strip() == "ERROR: no OIDC token can be had: give the job 'permissions: id-token: write'"
    code, _, err = await report(tmp_path, issuer, "https://x", "--status", "completed")
    assert code == 2 and "--status completed needs --conclusion" in err


async def test_an_unreadable_junit_file_still_reports_without_counts(results: ResultsServer,
                                                                     issuer: FakeOidcIssuer, tmp_path: Path):
    await results.dispatch("acme/l2-ci")
    issuer.claims_for_requests = {"repository": "acme/l2-ci"}
    (tmp_path / "bomb.xml").write_text(BOMB)
    code, out, err = await report(tmp_path, issuer, results.url + "/api/v1/results", "--status", "completed",
                                  "--conclusion", "success", "--junit", "bomb.xml", "--audience", AUDIENCE)
    assert code == 0, err
    assert "::warning::solstice-report: " in out and "refused for safety" in out
    [stored] = await results.store.results_of_upstream(RepoKey.parse(UPSTREAM))
    assert stored.report.tests is None and stored.conclusion == "success"


def test_the_composite_action_runs_solstice_report_with_inputs_from_the_environment():
    action = yaml.safe_load((REPO_ROOT / "docs" / "actions" / "solstice-report" / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"status", "conclusion", "junit", "artifact-url", "job-name"}
    [install, run] = action["runs"]["steps"]
    assert "solstice-report" in run["run"] and "pip install" in install["run"]
    # Inputs reach the script only through the environment: never pasted into it (no script injection).
    assert "${{" not in run["run"]
    assert all(value.startswith("${{ inputs.") for value in run["env"].values())
