"""End to end on loopback: a signed upstream webhook -> dispatches -> a downstream's report -> stored and shown.

The whole integration runs (fake GitHub App API, the real webhook app,
RabbitMQ for the upstream's own jobs); the downstreams are the fake
GitHub's repositories (repository_dispatch, checked against GitHub's
schema) and a Forgejo downstream's webhook receiver that checks the
relay's signature.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web

from integration.events import Delivery, Forge
from integration.external.allowlist import RepoKey, parse_allowlist
from integration.external.columns import ExternalColumns
from integration.external.records import DROPPED, FAILED, SENT
from integration.external.senders import SIGNATURE_HEADER, relay_secret
from integration.signature import sign
from tests.conftest import REPO_ROOT
from tests.dashboard.conftest import serve_dashboard
from tests.dashboard.support import request
from tests.dashboard.test_pages import cells_of, get
from tests.fakes.oidc import FakeOidcIssuer
from tests.fakes.serving import serve_on_loopback
from tests.integration.external.conftest import AUDIENCE, external_settings
from tests.integration.stack import WORKFLOW, IntegrationStack, RabbitQueue
from tests.waiting import async_wait_until

UPSTREAM = "Codertocat/Hello-World"
PR_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
RELAY_SECRET = "relay-master-secret"
DISPATCH_SCHEMA = jsonschema.Draft7Validator(
    json.loads((REPO_ROOT / "docs" / "schemas" / "dispatch-v1.schema.json").read_text()))


class ForgejoDownstream:
    """A Forgejo downstream's CI: takes the relay's webhook only with a good signature."""

    def __init__(self, repo: str) -> None:
        self.key = relay_secret(RELAY_SECRET, RepoKey.parse(repo))
        self.received: list[dict[str, Any]] = []
        self.refused = 0

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(signature, "sha256=" + sign(self.key, body)):
            self.refused += 1
            return web.Response(status=401)
        self.received.append(json.loads(body))
        return web.Response(status=202)


@dataclasses.dataclass
class World:
    stack: IntegrationStack
    queue: RabbitQueue
    issuer: FakeOidcIssuer
    forgejo: ForgejoDownstream
    allowlist: Path

    async def report(self, repo: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = self.issuer.mint(repo)
        async with aiohttp.ClientSession() as session:
            async with session.post(self.stack.url + "/api/v1/results", json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as answer:
                return answer.status, await answer.json()

    async def results(self, sha: str = PR_SHA) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.stack.url}/api/v1/results",
                                   params={"upstream": f"github:{UPSTREAM}", "sha": sha}) as answer:
                assert answer.status == 200
                return await answer.json()


def allowlist_text(hook_url: str) -> str:
    return f"""\
version: 1
upstreams:
  {UPSTREAM}:
    acme/l1-ci: L1
    acme/l2-ci: L2
    acme/l4-ci: L4
    forgejo:lab/riscv-ci:
      level: L2
      webhook_url: {hook_url}
  octo-org/other-upstream:
    acme/elsewhere-ci: L4
"""


@pytest.fixture
async def world(tmp_path: Path, fixtures_dir: Path, app_key, queue: RabbitQueue,
                issuer: FakeOidcIssuer) -> AsyncIterator[World]:
    forgejo = ForgejoDownstream("forgejo:lab/riscv-ci")
    hook_app = web.Application()
    hook_app.router.add_post("/hooks/solstice", forgejo.hook)
    hook_runner, hook_url = await serve_on_loopback(hook_app)
    allowlist = tmp_path / "allowlist.yaml"
    allowlist.write_text(allowlist_text(hook_url + "/hooks/solstice"))
    settings = external_settings(issuer, allowlist, webhook_secret=RELAY_SECRET, dispatch_attempts=3,
                                 dispatch_backoff=0.05, dispatch_backoff_max=0.1, unhealthy_after=2)
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, external=settings)
    await stack.start()
    for n, repo in enumerate(("acme/l1-ci", "acme/l2-ci", "acme/l4-ci", "acme/elsewhere-ci", "mallory/ci"), 11):
        stack.github.install(repo, n)
    stack.github.put_file(UPSTREAM, PR_SHA, WORKFLOW)
    try:
        yield World(stack, queue, issuer, forgejo, allowlist)
    finally:
        await stack.close()
        await hook_runner.cleanup()


def body_for(delivery: str, status: str = "in_progress", **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema_version": 1, "delivery_id": delivery, "upstream": {"repo": UPSTREAM, "sha": PR_SHA, "pr_number": 2},
        "run_id": "4242", "run_attempt": 1, "job_id": "test", "job_name": "Test on XPU", "status": status}
    if status == "completed":
        body.update(conclusion="success", tests={"passed": 10, "failed": 0, "skipped": 1, "errors": 0},
                    artifact_url="https://acme.example/runs/4242")
    return {**body, **more}


async def test_a_pull_request_reaches_every_listed_downstream_and_results_come_back(world: World, payload,
                                                                                   tmp_path: Path):
    stack = world.stack
    status, answer = await stack.deliver_github("pull_request", payload("github/pull_request.opened"),
                                                delivery="pr-delivery-1")
    assert (status, answer["result"]) == (202, "queued")  # the upstream's own job first
    assert len(await world.queue.take()) == 1
    await async_wait_until(lambda: len(stack.github.dispatches) == 3 and world.forgejo.received,
                           what="the dispatches")
    assert sorted(repo for repo, _ in stack.github.dispatches) == ["acme/l1-ci", "acme/l2-ci", "acme/l4-ci"]
    bodies = [body for _, body in stack.github.dispatches] + world.forgejo.received
    for body in bodies:
        DISPATCH_SCHEMA.validate(body)
        assert body["event_type"] == "solstice-upstream"
        assert body["client_payload"] == {
            "schema_version": 1, "delivery_id": "github:pr-delivery-1",
            "upstream": {"forge": "github", "repo": UPSTREAM, "clone_url": "https://github.com/Codertocat/Hello-World.git"},
            "event": "pull_request", "action": "opened", "sha": PR_SHA, "ref": "refs/pull/2/head", "pr_number": 2,
            "from_fork": False, "results_url": "http://solstice.test/api/v1/results"}
    assert world.forgejo.refused == 0
    # L2 and L4 report; only L4 shows upstream.
    for repo in ("acme/l2-ci", "acme/l4-ci"):
        assert (await world.report(repo, body_for("github:pr-delivery-1")))[0] == 201
        status, answer = await world.report(repo, body_for("github:pr-delivery-1", "completed"))
        assert (status, answer["result"], answer["state"]) == (200, "accepted", "completed")
    await async_wait_until(lambda: any(r["status"] == "completed" for r in stack.github.check_runs.values()),
                           what="the L4 check run to complete")
    [run] = stack.github.check_runs.values()
    assert run["name"] == "external / acme/l4-ci / Test on XPU" and run["head_sha"] == PR_SHA
    assert (run["status"], run["conclusion"], run["details_url"]) == ("completed", "success",
                                                                      "https://acme.example/runs/4242")
    assert "10 passed, 0 failed, 1 skipped" in run["output"]["summary"]
    assert [s for s, *_ in stack.github.check_run_statuses()] == [run["id"], run["id"]]  # created, then updated
    # Visible through the read API, per downstream.
    shown = {v["downstream"]: v for v in (await world.results())["downstreams"]}
    assert sorted(shown) == ["forgejo:lab/riscv-ci", "github:acme/l1-ci", "github:acme/l2-ci", "github:acme/l4-ci"]
    assert shown["github:acme/l1-ci"]["jobs"] == [] and shown["github:acme/l1-ci"]["dispatches"][0]["state"] == SENT
    assert [(j["status"], j["conclusion"]) for j in shown["github:acme/l2-ci"]["jobs"]] == [("completed", "success")]
    assert shown["github:acme/l2-ci"]["jobs"][0]["queue_seconds"] is None  # times from L3 only
    assert shown["github:acme/l4-ci"]["jobs"][0]["execution_seconds"] is not None
    # Visible on the dashboard: a column per downstream job in the repository's matrix, an entry in the
    # pull request's external CI section (the integration's column source over what it received).
    assert stack.integration.external is not None
    columns = (ExternalColumns(stack.integration.external.read),)
    (tmp_path / "dashboard").mkdir()
    async with serve_dashboard(tmp_path / "dashboard", columns=columns) as served:
        await served.store.submit(request("job-upstream", "build", PR_SHA, repo=UPSTREAM, pr=2))
        matrix = cells_of(await get(served, f"/github/{UPSTREAM}"))
        assert matrix.columns == ["build", "external / acme/l2-ci / Test on XPU", "external / acme/l4-ci / Test on XPU"]
        assert matrix.cells[(PR_SHA[:10], "external / acme/l4-ci / Test on XPU")] == "succeeded"
        pull = await get(served, f"/github/{UPSTREAM}/pull/2")
        assert "External CI (2)" in pull and 'href="https://acme.example/runs/4242"' in pull
    # The downstream of another upstream, and a repository on no list, cannot report on this change.
    assert (await world.report("acme/elsewhere-ci", body_for("github:pr-delivery-1")))[0] == 403
    assert (await world.report("mallory/ci", body_for("github:pr-delivery-1")))[0] == 403


async def test_a_replayed_webhook_dispatches_nothing_twice(world: World, payload):
    stack = world.stack
    body = payload("github/pull_request.opened")
    assert (await stack.deliver_github("pull_request", body, delivery="replayed"))[0] == 202
    await async_wait_until(lambda: len(stack.github.dispatches) == 3, what="the dispatches")
    status, answer = await stack.deliver_github("pull_request", body, delivery="replayed")
    assert (status, answer["result"]) == (200, "duplicate delivery")
    # Even offered again past the webhook's own dedupe, the relay records nothing new.
    relay = stack.integration.external.relay
    assert await relay.offer(Delivery(Forge.GITHUB, "pull_request", "replayed"), body) == 0
    await relay.send_due()
    assert len(stack.github.dispatches) == 3 and len(world.forgejo.received) == 1


async def test_downstream_api_down_is_retried_recorded_failed_and_the_upstream_is_unaffected(world: World, payload):
    stack = world.stack
    stack.github.fail_next(100, status=502, path_contains="/dispatches")
    status, answer = await stack.deliver_github("pull_request", payload("github/pull_request.opened"),
                                                delivery="down-1")
    assert (status, answer["result"]) == (202, "queued")
    assert len(await world.queue.take()) == 1  # the upstream's job went out regardless
    store = stack.integration.external.store

    async def failed() -> bool:
        records = await store.dispatches_of(RepoKey.parse(UPSTREAM), sha=PR_SHA)
        github = [r for r in records if r.downstream.forge.value == "github"]
        return len(github) == 3 and all(r.state == FAILED for r in github)

    await async_wait_until(failed, timeout=30, what="the dispatches to be recorded failed")
    for record in await store.dispatches_of(RepoKey.parse(UPSTREAM), sha=PR_SHA):
        if record.downstream.forge.value == "github":
            assert record.attempts == 3 and "HTTP 502" in record.last_error and record.finished_at
        else:
            assert record.state == SENT  # the Forgejo downstream was up
    # Each try was a retried HTTP call too: 3 tries x 2 attempts per downstream.
    assert len([c for c in stack.github.calls if "/dispatches" in c.path and c.status == 502]) == 18
    health = {v["downstream"]: v["health"] for v in (await world.results())["downstreams"]}
    assert health["github:acme/l2-ci"]["healthy"] is False and health["github:acme/l2-ci"]["failures"] == 3
    assert health["forgejo:lab/riscv-ci"]["healthy"] is True


async def test_a_repository_demoted_mid_run_has_its_next_report_refused(world: World, payload):
    stack = world.stack
    await stack.deliver_github("pull_request", payload("github/pull_request.opened"), delivery="demote-1")
    await async_wait_until(lambda: len(stack.github.dispatches) == 3, what="the dispatches")
    assert (await world.report("acme/l4-ci", body_for("github:demote-1")))[0] == 201
    world.allowlist.write_text(world.allowlist.read_text().replace("acme/l4-ci: L4", "acme/l4-ci: L1"))
    assert await stack.integration.external.allowlist.refresh()
    status, answer = await world.report("acme/l4-ci", body_for("github:demote-1", "completed"))
    assert (status, answer["reason"]) == (403, "level too low")
    assert "acme/l4-ci is at L1: it receives dispatches, but results are taken from L2" in answer["detail"]


async def test_an_unlisted_upstream_and_an_ignored_event_dispatch_nothing(world: World, payload):
    stack = world.stack
    other = payload("github/pull_request.opened")
    other["repository"]["full_name"] = "someone/else"
    other["pull_request"]["base"]["repo"]["full_name"] = "someone/else"
    other["pull_request"]["head"]["repo"]["full_name"] = "someone/else"
    await stack.deliver_github("pull_request", other, delivery="unlisted")
    await stack.deliver_github("pull_request", payload("github/pull_request.labeled"), delivery="labeled")
    await stack.integration.external.relay.send_due()
    assert stack.github.dispatches == []
    assert await stack.integration.external.store.dispatches_of(RepoKey.parse(UPSTREAM)) == []


async def test_an_audience_mismatch_is_refused_end_to_end(world: World, payload):
    await world.stack.deliver_github("pull_request", payload("github/pull_request.opened"), delivery="aud-1")
    token = world.issuer.mint("acme/l2-ci", aud="https://github.com/acme")
    async with aiohttp.ClientSession() as session:
        async with session.post(world.stack.url + "/api/v1/results", json=body_for("github:aud-1"),
                                headers={"Authorization": f"Bearer {token}"}) as answer:
            assert answer.status == 401
            assert f"ask for audience {AUDIENCE!r}" in (await answer.json())["detail"]


async def test_a_downstream_removed_before_its_dispatch_went_out_gets_nothing(world: World, payload):
    stack = world.stack
    relay = stack.integration.external.relay
    body = payload("github/pull_request.opened")
    assert await relay.offer(Delivery(Forge.GITHUB, "pull_request", "removed-1"), body) == 4
    # No await since the offer: the sender has not run yet when the new version takes effect.
    stack.integration.external.allowlist.current = parse_allowlist(
        world.allowlist.read_text().replace("    acme/l1-ci: L1\n", ""), "test", allow_http=True)
    store = stack.integration.external.store

    async def settled() -> list[tuple[str, str]]:
        records = await store.dispatches_of(RepoKey.parse(UPSTREAM), sha=PR_SHA)
        states = sorted((r.downstream.name, r.state) for r in records)
        return states if all(state != "pending" for _, state in states) else []

    states = await async_wait_until(settled, what="every dispatch to settle")
    assert states == [("acme/l1-ci", DROPPED), ("acme/l2-ci", SENT), ("acme/l4-ci", SENT), ("lab/riscv-ci", SENT)]
    assert "acme/l1-ci" not in [repo for repo, _ in stack.github.dispatches]
