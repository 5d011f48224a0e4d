"""The webhook endpoints with the fixtures' real payloads: signatures, limits, dedupe, queueing."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from integration.signature import sign
from tests.integration.stack import FORGEJO_SECRET, GITHUB_SECRET, WORKFLOW, IntegrationStack, RabbitQueue
from tests.waiting import async_wait_until

GH_REPO = "Codertocat/Hello-World"
GH_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
FJ_REPO = "gitea/webhooks"
FJ_SHA = "bffeb74224043ba2feb48d137756c8a9331c449a"


async def test_signed_github_push_queues_one_job_per_workflow_job(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert status == 202, answer
    assert answer["result"] == "queued"
    queued = await queue.take()
    assert [r.job_id for r in queued] == answer["jobs"]
    request = queued[0]
    assert request.key == "build" and request.runs_on == "illumos-stable"
    assert request.run_id == answer["run_id"]
    assert request.checkout.forge == "github"
    assert request.checkout.repo == GH_REPO
    assert request.checkout.sha == GH_SHA
    assert request.checkout.ref == "refs/heads/master"
    assert request.checkout.installation_id == 1
    assert request.checkout.clone_url == "https://github.com/Codertocat/Hello-World.git"
    assert request.trusted is True
    assert [s.run for s in request.steps] == ["cargo test --workspace"]
    assert request.workflow_name == "Solstice CI"
    assert request.origin == "github push"


async def test_signed_forgejo_push_queues_jobs(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    status, answer = await stack.deliver_forgejo("push", payload("forgejo/push"))
    assert status == 202, answer
    queued = await queue.take()
    assert len(queued) == 1
    assert queued[0].checkout.forge == "forgejo"
    assert queued[0].checkout.ref == "refs/heads/develop"
    assert queued[0].checkout.sha == FJ_SHA


async def test_gitea_headers_are_accepted(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    status, answer = await stack.deliver_forgejo("push", payload("forgejo/push"), flavour="Gitea")
    assert status == 202, answer
    assert len(await queue.take()) == 1


async def test_forgejo_also_accepts_github_style_signature(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    body = json.dumps(payload("forgejo/push")).encode()
    status, _ = await stack.post("/webhooks/forgejo", body, {
        "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": "sha256=" + sign(FORGEJO_SECRET, body),
    })
    assert status == 202
    assert len(await queue.take()) == 1


async def test_wrong_or_missing_signature_is_401_and_queues_nothing(stack: IntegrationStack, queue: RabbitQueue,
                                                                    payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    gh = payload("github/push.new-branch")
    fj = payload("forgejo/push")
    answers = [
        await stack.deliver_github("push", gh, secret="not-the-secret"),
        await stack.deliver_github("push", gh, secret=None),
        await stack.deliver_github("push", gh, signature="sha1=" + sign(GITHUB_SECRET, json.dumps(gh).encode())),
        await stack.deliver_github("push", gh, signature="sha256=zz\u00e9"),
        # the Forgejo secret does not open the GitHub endpoint, and the other way round
        await stack.deliver_github("push", gh, secret=FORGEJO_SECRET),
        await stack.deliver_forgejo("push", fj, secret=GITHUB_SECRET),
        await stack.deliver_forgejo("push", fj, secret=None),
    ]
    assert [status for status, _ in answers] == [401] * len(answers)
    assert await queue.count() == 0
    # Nothing reached the forge either: a forged delivery costs no API call.
    assert stack.github.calls == [] and stack.forgejo.calls == []


async def test_signature_over_a_modified_body_is_refused(stack: IntegrationStack, queue: RabbitQueue, payload):
    body = json.dumps(payload("github/push.new-branch")).encode()
    signature = "sha256=" + sign(GITHUB_SECRET, body)
    status, _ = await stack.post("/webhooks/github", body + b" ", {
        "X-GitHub-Event": "push", "X-GitHub-Delivery": "x", "X-Hub-Signature-256": signature,
    })
    assert status == 401


async def test_replayed_delivery_queues_nothing(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    first = await stack.deliver_github("push", payload("github/push.new-branch"), delivery="same-delivery")
    again = await stack.deliver_github("push", payload("github/push.new-branch"), delivery="same-delivery")
    assert first[0] == 202
    assert again == (200, {"result": "duplicate delivery", "detail": "this delivery was already processed"})
    assert len(await queue.take()) == 1


async def test_same_head_pushed_twice_builds_once(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    first = await stack.deliver_github("push", payload("github/push.new-branch"))
    second = await stack.deliver_github("push", payload("github/push.new-branch"))  # new delivery id
    assert first[0] == 202
    assert second[0] == 200 and second[1]["result"] == "duplicate build"
    assert len(await queue.take()) == 1


async def test_concurrent_replays_queue_once(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
    results = await asyncio.gather(*[
        stack.deliver_github("push", payload("github/push.new-branch"), delivery="d-concurrent") for _ in range(10)
    ])
    assert sorted(status for status, _ in results) == [200] * 9 + [202]
    assert len(await queue.take()) == 1


async def test_oversize_content_length_is_413(stack: IntegrationStack, queue: RabbitQueue, caplog):
    body = io.BytesIO(b"{" + b" " * (stack.settings.webhooks.max_body_bytes + 10) + b"}")  # sent with a Content-Length
    status, answer = await stack.post("/webhooks/github", body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "big"})
    assert status == 413
    assert answer["result"] == "payload too large"
    # refused from the Content-Length header, before reading any of the body
    assert "oversize webhook refused" in [r.getMessage() for r in caplog.records]
    assert await queue.count() == 0


async def test_oversize_chunked_body_is_refused_before_it_is_sent_whole(stack: IntegrationStack):
    """No Content-Length: the cap is enforced while streaming; the 413 comes while we still hold most of the body."""
    cap = stack.settings.webhooks.max_body_bytes
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    try:
        writer.write(
            b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"X-GitHub-Delivery: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 65536
        sent = 0
        while sent <= cap + len(chunk):  # a little over the cap; the full body would be 10x the cap
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        assert sent < 10 * cap
    finally:
        writer.close()


async def test_malformed_json_is_400(stack: IntegrationStack, queue: RabbitQueue):
    status, answer = await stack.deliver_github("push", b'{"ref": "refs/heads/x",')
    assert status == 400 and answer["result"] == "malformed JSON"
    status, answer = await stack.deliver_forgejo("push", b"[1, 2]")
    assert status == 400
    status, answer = await stack.deliver_github("push", b"\xff\xfe")
    assert status == 400
    assert await queue.count() == 0


async def test_payload_missing_a_needed_field_is_400(stack: IntegrationStack, payload):
    broken = payload("github/push.new-branch")
    del broken["after"]
    status, answer = await stack.deliver_github("push", broken)
    assert status == 400
    assert "'after'" in answer["detail"]


async def test_unknown_event_is_202_ignored(stack: IntegrationStack, queue: RabbitQueue, payload):
    status, answer = await stack.deliver_github("check_suite", payload("github/check_suite.requested"))
    assert status == 202 and answer["result"] == "ignored"
    assert "check_suite" in answer["detail"]
    status, answer = await stack.deliver_forgejo("issues", {"action": "opened"})
    assert status == 202 and answer["result"] == "ignored"
    assert await queue.count() == 0


async def test_ping_is_answered(stack: IntegrationStack, payload):
    status, answer = await stack.deliver_github("ping", payload("github/ping"))
    assert status == 200
    assert answer == {"result": "pong", "detail": "Anything added dilutes everything else."}


async def test_deleted_tag_builds_nothing(stack: IntegrationStack, queue: RabbitQueue, payload):
    status, answer = await stack.deliver_github("push", payload("github/push"))  # refs/tags/simple-tag deleted
    assert status == 202 and answer["result"] == "ignored"
    assert "deleted" in answer["detail"]
    assert await queue.count() == 0


async def test_no_workflow_file_queues_nothing(stack: IntegrationStack, queue: RabbitQueue, payload, caplog):
    caplog.set_level(logging.INFO, logger="integration")
    status, answer = await stack.deliver_github("push", payload("github/push.new-branch"))
    assert status == 200 and answer["result"] == "no workflow"
    assert await queue.count() == 0
    # logged with the reason, so an operator can tell why nothing ran
    assert f"webhook processed: no workflow ({GH_REPO} has no .solstice/workflow.kdl at {GH_SHA[:12]})" in [
        r.getMessage() for r in caplog.records
    ]
    # the fake answered the contents call 404: it was asked at the exact sha
    asked = [c for c in stack.github.calls if "/contents/" in c.path]
    assert asked and asked[0].query["ref"] == GH_SHA and asked[0].status == 404


async def test_pull_request_closed_requests_cancellation(stack: IntegrationStack, queue: RabbitQueue, payload):
    status, answer = await stack.deliver_github("pull_request", payload("github/pull_request.closed"))
    assert status == 202 and answer["result"] == "cancel requested"
    [request] = stack.canceller.requests
    assert (request.forge, request.repo, request.pull_request) == ("github", GH_REPO, 2)
    assert await queue.count() == 0


async def test_pull_request_head_is_built(stack: IntegrationStack, queue: RabbitQueue, payload):
    head = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    stack.github.put_file(GH_REPO, head, WORKFLOW)
    for action in ("opened", "synchronize", "reopened"):
        status, _ = await stack.deliver_github("pull_request", payload(f"github/pull_request.{action}"))
        assert status in (200, 202)
    # three deliveries of the same head: one build
    [request] = await queue.take()
    assert request.checkout.ref == "refs/pull/2/head"
    assert request.checkout.sha == head
    assert request.checkout.pull_request == 2
    assert request.trusted is True


async def test_forgejo_fork_pull_request_runs_untrusted(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW.replace(
        'step name="Test"', 'secret "DEPLOY_KEY"\n    step name="Test"'))
    status, answer = await stack.deliver_forgejo("pull_request", payload("forgejo/pull_request.opened"))
    assert status == 202, answer
    [request] = await queue.take()
    assert request.trusted is False
    assert list(request.secrets) == ["DEPLOY_KEY"]  # names only: the orchestrator withholds them (trusted=False)
    assert request.checkout.repo == FJ_REPO  # the base repository, at the fork's head
    assert request.checkout.ref == "refs/pull/3/head"
    assert request.checkout.sha == FJ_SHA


async def test_dedupe_survives_a_restart(tmp_path, fixtures_dir, app_key, queue: RabbitQueue, payload):
    store = str(tmp_path / "kept.sqlite")
    for attempt in range(2):
        (tmp_path / f"run{attempt}").mkdir()
        restarted = IntegrationStack(tmp_path / f"run{attempt}", fixtures_dir, app_key, queue.publisher, store=store)
        await restarted.start()
        try:
            restarted.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
            status, answer = await restarted.deliver_github("push", payload("github/push.new-branch"), delivery="kept")
        finally:
            await restarted.close()
        assert (status, answer["result"]) == ((202, "queued") if attempt == 0 else (200, "duplicate delivery"))
    assert len(await queue.take()) == 1


async def test_a_hanging_forge_is_given_up_within_the_handling_deadline(
    tmp_path, fixtures_dir, app_key, queue: RabbitQueue, payload,
):
    from integration.settings import ReportSettings, WebhookSettings

    slow = IntegrationStack(
        tmp_path, fixtures_dir, app_key, queue.publisher,
        webhooks=WebhookSettings(handling_deadline=1),
        report=ReportSettings(attempts=5, backoff_initial=0.01, backoff_max=0.05, request_timeout=30),
    )
    await slow.start()
    try:
        slow.github.put_file(GH_REPO, GH_SHA, WORKFLOW)
        slow.github.hang_next(5, 1.5, path_contains="/contents/")
        status, answer = await slow.deliver_github("push", payload("github/push.new-branch"))
        assert (status, answer["result"]) == (202, "deferred"), answer  # kept for a background retry
        assert "TimeoutError" in answer["detail"]
        # one attempt, cut at the deadline instead of request_timeout x attempts
        await async_wait_until(lambda: any("/contents/" in c.path for c in slow.github.calls), what="the hung call")
        assert len([c for c in slow.github.calls if "/contents/" in c.path]) == 1
    finally:
        await slow.close()
    assert await queue.count() == 0


async def test_each_build_action_of_a_pull_request_queues_its_head(stack: IntegrationStack, queue: RabbitQueue,
                                                                   payload):
    """opened, synchronize and reopened each build the PR's head (new commits: new builds); labeled does not."""
    heads = {}
    for i, action in enumerate(("opened", "synchronize", "reopened")):
        body = payload(f"github/pull_request.{action}")
        body["pull_request"]["head"]["sha"] = heads[action] = f"{i + 1:x}" * 40
        stack.github.put_file(GH_REPO, heads[action], WORKFLOW)
        status, answer = await stack.deliver_github("pull_request", body)
        assert (status, answer["result"]) == (202, "queued"), (action, answer)
    status, answer = await stack.deliver_github("pull_request", payload("github/pull_request.labeled"))
    assert (status, answer["result"]) == (202, "ignored")
    queued = await queue.take()
    assert [r.checkout.sha for r in queued] == list(heads.values())
    assert {(r.checkout.ref, r.checkout.pull_request, r.trusted) for r in queued} == {("refs/pull/2/head", 2, True)}


async def test_github_fork_pull_request_runs_untrusted(stack: IntegrationStack, queue: RabbitQueue, payload):
    body = payload("github/pull_request.opened")
    body["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    head = body["pull_request"]["head"]["sha"]
    with_secret = WORKFLOW.replace('step name="Test"', 'secret "DEPLOY_KEY"\n    step name="Test"')
    stack.github.put_file(GH_REPO, head, with_secret)
    status, answer = await stack.deliver_github("pull_request", body)
    assert status == 202, answer
    [request] = await queue.take()
    assert request.trusted is False  # the orchestrator hands an untrusted job no secret values
    assert list(request.secrets) == ["DEPLOY_KEY"]
    assert (request.checkout.repo, request.checkout.sha) == (GH_REPO, head)
    # the workflow was read from the base repository at the fork's head commit
    [read] = stack.github.calls_to("GET", "/contents/")
    assert read.path.startswith(f"/repos/{GH_REPO}/") and read.query["ref"] == head


async def test_forgejo_synchronized_and_closed(stack: IntegrationStack, queue: RabbitQueue, payload):
    body = payload("forgejo/pull_request.opened")
    body["action"] = "synchronized"
    body["pull_request"]["head"]["sha"] = "f" * 40
    stack.forgejo.put_file(FJ_REPO, "f" * 40, WORKFLOW)
    status, answer = await stack.deliver_forgejo("pull_request", body)
    assert (status, answer["result"]) == (202, "queued"), answer
    [request] = await queue.take()
    assert (request.checkout.sha, request.checkout.pull_request) == ("f" * 40, 3)
    body["action"] = "closed"
    status, answer = await stack.deliver_forgejo("pull_request", body)
    assert (status, answer["result"]) == (202, "cancel requested")
    # the new head superseded the pull request's other heads; closing it cancels every head
    supersede, cancel = stack.canceller.requests
    assert (supersede.forge, supersede.repo, supersede.pull_request, supersede.keep_sha) == (
        "forgejo", FJ_REPO, 3, "f" * 40)
    assert (cancel.forge, cancel.repo, cancel.pull_request, cancel.keep_sha) == ("forgejo", FJ_REPO, 3, "")


async def test_forgejo_replay_and_oversize(stack: IntegrationStack, queue: RabbitQueue, payload):
    stack.forgejo.put_file(FJ_REPO, FJ_SHA, WORKFLOW)
    first = await stack.deliver_forgejo("push", payload("forgejo/push"), delivery="fj-same")
    again = await stack.deliver_forgejo("push", payload("forgejo/push"), delivery="fj-same")
    assert (first[0], first[1]["result"]) == (202, "queued")
    assert (again[0], again[1]["result"]) == (200, "duplicate delivery")
    big = payload("forgejo/push")
    big["commits"] = [{"message": "x" * 1024}] * (stack.settings.webhooks.max_body_bytes // 1024 + 1)
    status, answer = await stack.deliver_forgejo("push", json.dumps(big).encode())  # signed, but too big
    assert (status, answer["result"]) == (413, "payload too large")
    assert len(await queue.take()) == 1


def _rerun(payload, job_id: str):
    body = payload("github/check_run.rerequested")
    body["check_run"]["external_id"] = job_id
    return body


async def test_rerun_of_a_check_run_asks_to_retry_its_job(stack: IntegrationStack, queue: RabbitQueue, payload):
    job_id = "job-" + "ab" * 16
    status, answer = await stack.deliver_github("check_run", _rerun(payload, job_id))
    # the stack's LoggingRetrier records the request and says no job was retried
    assert (status, answer["result"]) == (202, "retry refused"), answer
    [request] = stack.integration.service.retrier.requests  # type: ignore[attr-defined]
    assert (request.forge, request.repo, request.job_id) == ("github", "github/hello-world", job_id)
    assert request.reason == "re-run requested on github by octocat"
    assert await queue.count() == 0


async def test_rerun_goes_to_a_wired_retrier(tmp_path, fixtures_dir, app_key, queue: RabbitQueue, payload):
    from integration.cancel import RetryRequest

    class Retrier:
        def __init__(self) -> None:
            self.requests: list[RetryRequest] = []

        async def retry(self, request: RetryRequest) -> bool:
            self.requests.append(request)
            return True

    retrier = Retrier()
    wired = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, retrier=retrier)
    await wired.start()
    try:
        job_id = "job-" + "cd" * 16
        status, answer = await wired.deliver_github("check_run", _rerun(payload, job_id), delivery="rerun-1")
        assert (status, answer["result"]) == (202, "retry requested"), answer
        again = await wired.deliver_github("check_run", _rerun(payload, job_id), delivery="rerun-1")
        assert again[1]["result"] == "duplicate delivery"  # a replayed click retries once
    finally:
        await wired.close()
    assert [r.job_id for r in retrier.requests] == [job_id]


async def test_rerun_of_a_check_run_that_is_not_a_job_is_ignored(stack: IntegrationStack, payload):
    for external_id in ("", "randscape", "job-; rm -rf /"):
        status, answer = await stack.deliver_github("check_run", _rerun(payload, external_id))
        assert (status, answer["result"]) == (202, "ignored"), (external_id, answer)
    body = _rerun(payload, "job-" + "ab" * 16)
    body["action"] = "completed"
    assert (await stack.deliver_github("check_run", body))[1]["result"] == "ignored"
    assert stack.integration.service.retrier.requests == []  # type: ignore[attr-defined]
