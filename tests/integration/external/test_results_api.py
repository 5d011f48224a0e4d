"""POST /api/v1/results over HTTP: who may report, every state transition, the limits, plain answers."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from integration.external.allowlist import RepoKey
from tests.fakes.oidc import FakeOidcIssuer
from tests.integration.external.conftest import ALLOWLIST, SHA, ResultsServer, completed, report_body


async def test_only_allowlisted_repositories_at_l2_or_above_may_report(results: ResultsServer,
                                                                       issuer: FakeOidcIssuer):
    await results.dispatch("acme/l1-ci")
    status, answer, _ = await results.post(report_body(), issuer.mint("acme/l1-ci"))
    assert (status, answer["result"], answer["reason"]) == (403, "rejected", "level too low")
    assert "acme/l1-ci is at L1: it receives dispatches, but results are taken from L2" in answer["detail"]
    status, answer, _ = await results.post(report_body(), issuer.mint("mallory/ci"))
    assert (status, answer["reason"]) == (403, "not allowlisted")
    status, answer, headers = await results.post(report_body(), issuer.mint("acme/l2-ci", aud="https://else"))
    assert (status, answer["reason"]) == (401, "bad token") and "another audience" in answer["detail"]
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    status, answer, _ = await results.post(report_body(), None)
    assert status == 401 and "no bearer token" in answer["detail"]
    assert await results.store.count_results(RepoKey.parse("acme/l1-ci")) == 0


async def test_every_state_transition(results: ResultsServer, issuer: FakeOidcIssuer):
    await results.dispatch("acme/l2-ci")
    token = issuer.mint("acme/l2-ci")
    # none -> in_progress
    status, answer, _ = await results.post(report_body(), token)
    assert (status, answer["result"], answer["move"], answer["state"]) == (201, "accepted", "created", "in_progress")
    assert (answer["repository"], answer["level"], answer["sha"]) == ("acme/l2-ci", "L2", SHA)
    # in_progress -> in_progress: nothing changes, and the answer says so
    status, answer, _ = await results.post(report_body(started_at="2025-04-28T11:00:00Z"), token)
    assert (status, answer["move"], answer["detail"]) == (200, "unchanged", "already in progress: nothing changed")
    # in_progress -> completed, the first-seen start kept
    [before] = await results.store.results_of_upstream(RepoKey.parse("octo-org/octo-repo"))
    status, answer, _ = await results.post(completed(), token)
    assert (status, answer["move"], answer["state"]) == (200, "completed", "completed")
    [after] = await results.store.results_of_upstream(RepoKey.parse("octo-org/octo-repo"))
    assert after.first_seen_at == before.first_seen_at and after.completed_seen_at is not None
    assert after.report.started_at == "2025-04-28T10:15:30Z"  # the in_progress report's, kept under the completed one
    # completed -> in_progress and completed -> completed: 409, nothing changed
    status, answer, _ = await results.post(report_body(), token)
    assert (status, answer["result"], answer["reason"]) == (409, "rejected", "conflict")
    assert "already completed (success): an in_progress report cannot follow it" in answer["detail"]
    status, answer, _ = await results.post(completed(conclusion="failure"), token)
    assert status == 409 and "a result is reported once" in answer["detail"]
    assert (await results.store.get_result(after.key)) == after
    # completed alone: a lost in_progress does not lose the result
    status, answer, _ = await results.post(completed(job_id="lint", job_name="Lint"), token)
    assert (status, answer["move"], answer["state"]) == (201, "created", "completed")


async def test_a_new_run_attempt_is_a_fresh_record_from_l3(results: ResultsServer, issuer: FakeOidcIssuer):
    await results.dispatch("acme/l2-ci")
    await results.dispatch("acme/l3-ci")
    status, answer, _ = await results.post(completed(run_attempt=2), issuer.mint("acme/l2-ci", run_attempt="2"))
    assert status == 403 and "re-runs (run_attempt 2) are taken from L3 repositories" in answer["detail"]
    assert (await results.post(completed(), issuer.mint("acme/l3-ci")))[0] == 201
    status, answer, _ = await results.post(report_body(run_attempt=2), issuer.mint("acme/l3-ci", run_attempt="2"))
    assert (status, answer["move"], answer["state"]) == (201, "created", "in_progress")
    status, _, _ = await results.post(completed(run_attempt=2), issuer.mint("acme/l3-ci", run_attempt="2"))
    assert status == 200
    status, _, _ = await results.post(completed(run_attempt=3), issuer.mint("acme/l3-ci", run_attempt="3"))
    assert status == 201
    upstream = RepoKey.parse("octo-org/octo-repo")
    jobs = [(r.key.run_attempt, r.status) for r in await results.store.results_of_upstream(upstream)]
    assert sorted(jobs) == [(1, "completed"), (2, "completed"), (3, "completed")]


async def test_reports_bind_to_a_real_dispatch_of_the_caller(results: ResultsServer, issuer: FakeOidcIssuer):
    await results.dispatch("acme/l2-ci")
    await results.dispatch("acme/l3-ci", delivery="github:only-l3")
    token = issuer.mint("acme/l2-ci")
    status, answer, _ = await results.post(report_body("github:never"), token)
    assert (status, answer["reason"]) == (403, "not dispatched")
    assert "'github:never' was never dispatched to acme/l2-ci" in answer["detail"]
    status, answer, _ = await results.post(report_body("github:only-l3"), token)
    assert (status, answer["reason"]) == (403, "not dispatched")
    status, answer, _ = await results.post(report_body(upstream={"repo": "octo-org/octo-repo", "sha": "b" * 40}),
                                           token)
    assert status == 422 and answer["detail"].startswith("upstream.sha: bbbb")
    status, answer, _ = await results.post(report_body(upstream={"repo": "octo-org/other", "sha": SHA}), token)
    assert status == 422 and "is not the dispatched repository" in answer["detail"]
    status, answer, _ = await results.post(report_body(run_id="999"), token)
    assert (status, answer["reason"]) == (422, "wrong run")
    assert answer["detail"] == "run_id: '999' is not the run the token was minted in (4242)"


async def test_schema_errors_come_back_with_their_messages(results: ResultsServer, issuer: FakeOidcIssuer):
    await results.dispatch("acme/l2-ci")
    token = issuer.mint("acme/l2-ci")
    status, answer, _ = await results.post(report_body(schema_version=3, color="red"), token)
    assert (status, answer["result"], answer["problems"]) == (
        422, "rejected", ["schema_version 3 is not supported: this server takes 1"])
    status, answer, _ = await results.post(report_body(color="red", artifact_url="ftp://x"), token)
    assert status == 422
    assert answer["problems"] == ["the body: unknown field 'color'", "artifact_url: 'ftp://x' is not an https URL "
                                                                     "(no spaces)"]
    status, answer, _ = await results.post(b"{oops", token)
    assert status == 400 and answer["detail"].startswith("the body is not JSON")


async def test_oversize_bodies_get_413_before_they_are_read_whole(results: ResultsServer, issuer: FakeOidcIssuer):
    big = json.dumps(report_body(job_name="x" * (3 * 1024 * 1024))).encode()
    # Content-Length says it: refused before the token is even looked at.
    status, answer, _ = await results.post(big, None)
    assert (status, answer["reason"]) == (413, "too large")
    assert answer["detail"] == f"a report is limited to {2 * 1024 * 1024} bytes"

    # No Content-Length (chunked): refused as soon as the cap is passed.
    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(big), 256 * 1024):
            yield big[start:start + 256 * 1024]

    headers = {"Authorization": "Bearer " + issuer.mint("acme/l2-ci"), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(results.url + "/api/v1/results", data=chunks(), headers=headers) as answer:
                assert answer.status == 413
                assert (await answer.json())["reason"] == "too large"
        except aiohttp.ClientOSError:
            pass  # the server closed while we still sent: also a refusal, checked below
    assert await results.store.count_results(RepoKey.parse("acme/l2-ci")) == 0


async def test_the_rate_limit_answers_429_with_retry_after(tmp_path: Path, issuer: FakeOidcIssuer):
    server = ResultsServer(tmp_path, issuer, rate_per_minute=1, rate_burst=2)
    await server.start()
    try:
        await server.dispatch("acme/l2-ci")
        token = issuer.mint("acme/l2-ci")
        assert (await server.post(report_body(), token))[0] == 201
        assert (await server.post(report_body(), token))[0] == 200
        status, answer, headers = await server.post(completed(), token)
        assert (status, answer["reason"]) == (429, "rate limited")
        assert 50 <= int(headers["Retry-After"]) <= 60 and answer["retry_after"] == int(headers["Retry-After"])
        assert "retry after" in answer["detail"]
        # Buckets are per repository.
        await server.dispatch("acme/l3-ci")
        assert (await server.post(report_body(), issuer.mint("acme/l3-ci")))[0] == 201
    finally:
        await server.close()


async def test_the_quota_on_stored_results(tmp_path: Path, issuer: FakeOidcIssuer):
    server = ResultsServer(tmp_path, issuer, quota_per_repository=2)
    await server.start()
    try:
        await server.dispatch("acme/l2-ci")
        token = issuer.mint("acme/l2-ci")
        for job in ("a", "b"):
            assert (await server.post(completed(job_id=job), token))[0] == 201
        status, answer, headers = await server.post(completed(job_id="c"), token)
        assert (status, answer["reason"]) == (429, "quota") and "holds 2 results, its quota" in answer["detail"]
        assert headers["Retry-After"] == "3600"
    finally:
        await server.close()


async def test_a_repository_demoted_mid_run_is_refused_at_once(results: ResultsServer, issuer: FakeOidcIssuer):
    await results.dispatch("acme/l2-ci")
    token = issuer.mint("acme/l2-ci")
    assert (await results.post(report_body(), token))[0] == 201
    results.allowlist.write_text(ALLOWLIST.replace("acme/l2-ci: L2", "acme/l2-ci: L1"))
    assert await results.external.allowlist.refresh()
    status, answer, _ = await results.post(completed(), token)
    assert (status, answer["reason"]) == (403, "level too low")
    results.allowlist.write_text(ALLOWLIST.replace("    acme/l2-ci: L2\n", ""))
    assert await results.external.allowlist.refresh()
    status, answer, _ = await results.post(completed(), token)
    assert (status, answer["reason"]) == (403, "not allowlisted")
    [kept] = await results.store.results_of_upstream(RepoKey.parse("octo-org/octo-repo"))
    assert kept.status == "in_progress"


async def test_a_store_that_is_down_answers_unavailable_and_says_it_is_not_the_callers_fault(
        results: ResultsServer, issuer: FakeOidcIssuer):
    await results.dispatch("acme/l2-ci")
    await results.store.close()
    status, answer, headers = await results.post(report_body(), issuer.mint("acme/l2-ci"))
    assert (status, answer["result"]) == (503, "unavailable")
    assert "Nothing was stored. This is not your fault and must not fail your CI: retry after 30 seconds" in \
        answer["detail"]
    assert headers["Retry-After"] == "30"
    await results.store.open()


async def test_results_are_visible_with_trusted_and_claimed_fields_apart(results: ResultsServer,
                                                                         issuer: FakeOidcIssuer):
    await results.dispatch("acme/l3-ci")
    token = issuer.mint("acme/l3-ci")
    await results.post(report_body(), token)
    await results.post(completed(), token)
    status, doc = await results.get(f"/api/v1/results?upstream=github:octo-org/octo-repo&sha={SHA}")
    assert status == 200
    [view] = doc["downstreams"]
    assert (view["downstream"], view["level"], view["health"]["healthy"]) == ("github:acme/l3-ci", "L3", True)
    assert [d["state"] for d in view["dispatches"]] == ["sent"]
    [job] = view["jobs"]
    assert (job["status"], job["conclusion"], job["level"], job["sha"]) == ("completed", "success", "L3", SHA)
    assert job["queue_seconds"] is not None and job["execution_seconds"] is not None  # L3 shows times
    assert job["claimed_artifact_url"] == "https://acme.example/ci/183512/"
    assert job["claimed_tests"] == {"passed": 8430, "failed": 2, "skipped": 20, "errors": 0}
    status, doc = await results.get("/api/v1/results?upstream=github:octo-org/octo-repo&pull=7")
    assert [j["job_id"] for v in doc["downstreams"] for j in v["jobs"]] == ["test"]
    status, doc = await results.get("/api/v1/downstreams?days=7")
    [summary] = doc["downstreams"]
    assert (summary["downstream"], summary["completed"], summary["pass_rate"]) == ("github:acme/l3-ci", 1, 1.0)
    assert summary["last"]["conclusion"] == "success" and doc["allowlist"]["error"] == ""
    assert (await results.get("/api/v1/results?upstream=nope"))[0] == 400
