"""Greenness through the whole integration: ingest by webhook and by poll, dedupe, projects, incremental runs, API."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from common.rpc import jobs_pb2
from integration.greenness.settings import GreennessSettings, HookSettings, ProjectSettings, QueueSettings
from tests.integration.greenness.flow import REF, REPO, Flow
from tests.integration.stack import IntegrationStack, RabbitQueue

S = jobs_pb2.JobState
OK, FAIL = S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED
QUEUE_PATH = f"/api/v1/queues/forgejo/{REPO}/develop"


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


SETTINGS = GreennessSettings(
    enabled=True,
    queues={"develop": QueueSettings(repo=f"forgejo:{REPO}", ref=REF, poll_interval=3600)},
    projects={"web": ProjectSettings(repo=f"forgejo:{REPO}", paths=("web/**",), jobs=("web-test",)),
              "api": ProjectSettings(repo=f"forgejo:{REPO}", paths=("api/**", "proto/*.proto"), jobs=("api-test",))},
    hooks={"note": HookSettings(command=(sys.executable, "-c", "pass"), projects=("",))},
)
CIADM = os.path.join(os.path.dirname(sys.executable), "ciadm")


async def ciadm(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(CIADM, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, "HOME": "/nonexistent"})
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def flow(tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes], queue: RabbitQueue,
               payload: Callable[[str], dict[str, Any]]) -> AsyncIterator[Flow]:
    stack = IntegrationStack(tmp_path, fixtures_dir, app_key, queue.publisher, greenness=SETTINGS)
    await stack.start()
    try:
        yield Flow(stack, queue, payload)
    finally:
        await stack.close()


async def test_a_poll_and_a_webhook_for_the_same_head_are_one_build(flow: Flow):
    a, b = sha("a"), sha("b")
    flow.commit(a, (), ("README",), "build")
    flow.commit(b, (a,), ("README",), "build")
    poller = flow.greenness.poller
    # Webhook first, then the poll sees the same head.
    status, answer = await flow.push(a)
    assert (status, answer["result"]) == (202, "queued")
    flow.stack.forgejo.set_branch(REPO, "develop", a)
    assert await poller.poll(*next(iter(poller.polled().items()))) is True
    assert len(await flow.take()) == 1
    # Poll first, then the webhook for that head is a duplicate.
    flow.stack.forgejo.set_branch(REPO, "develop", b)
    assert await poller.poll(*next(iter(poller.polled().items()))) is True
    status, answer = await flow.push(b)
    assert (status, answer["result"]) == (200, "duplicate build")
    taken = await flow.take()
    assert [(r.checkout.sha, r.checkout.ref) for r in taken] == [(b, REF)]
    # The same head polled again hands nothing over.
    assert await poller.poll(*next(iter(poller.polled().items()))) is False
    assert await flow.queue.count() == 0


async def test_a_repeated_head_is_built_once(flow: Flow):
    a = sha("rep")
    flow.commit(a, (), ("README",), "build", "lint")
    assert (await flow.push(a))[1]["result"] == "queued"
    assert (await flow.push(a))[1]["result"] == "duplicate build"  # another delivery of the same head
    assert len(await flow.take()) == 2


async def test_projects_keep_their_own_last_green_and_only_affected_projects_run(flow: Flow):
    jobs = ("web-test", "api-test", "lint")
    a, b, c, d = sha("pa"), sha("pb"), sha("pc"), sha("pd")
    flow.commit(a, (), ("web/app.js", "api/main.go"), *jobs)
    flow.commit(b, (a,), ("web/app.js",), *jobs)  # only web changed
    flow.commit(c, (b,), ("api/handler.go",), *jobs)  # only api changed
    flow.commit(d, (sha("elsewhere"),), ("web/app.js",), *jobs)  # a force-push: a is not its ancestor
    flow.stack.forgejo.commit(REPO, sha("elsewhere"))

    await flow.push(a)
    assert sorted(r.key for r in await flow.take()) == sorted(jobs)  # no green commit yet: everything
    await flow.finish(a, {"web-test": OK, "api-test": OK, "lint": OK})

    await flow.push(b)
    assert sorted(r.key for r in await flow.take()) == ["lint", "web-test"]  # api carried from a
    await flow.finish(b, {"web-test": FAIL, "lint": OK}, reason="web: 2 tests failed")
    status, doc = await flow.get(QUEUE_PATH + "/last-green")
    assert status == 200
    assert doc["last_green"]["sha"] == a and not doc["green"]
    assert doc["head"]["sha"] == b and doc["head"]["degree"] == pytest.approx(1 / 3)
    assert doc["head"]["plan"].startswith(f"incremental since {a[:12]}: web changed; api carried")
    # The failure is confined to web: api's last green moves on to b (carried), web's stays at a.
    assert doc["projects"]["api"]["last_green"]["sha"] == b
    assert doc["projects"]["api"]["last_green"]["carried_from"] == a
    assert doc["projects"]["web"]["last_green"]["sha"] == a and not doc["projects"]["web"]["green"]

    await flow.push(c)
    # Since the queue's last green (a), web and api both changed: both run.
    assert sorted(r.key for r in await flow.take()) == sorted(jobs)
    await flow.finish(c, {"web-test": OK, "api-test": OK, "lint": OK})
    status, doc = await flow.get(QUEUE_PATH + "/last-green")
    assert doc["last_green"]["sha"] == c and doc["green"]

    await flow.push(d)
    assert sorted(r.key for r in await flow.take()) == sorted(jobs)
    status, doc = await flow.get(QUEUE_PATH + "/commits?limit=1")
    assert doc["commits"][0]["sha"] == d
    assert "not an ancestor" in doc["commits"][0]["plan"] and doc["commits"][0]["plan"].startswith("full:")

    status, svg = await flow.get(QUEUE_PATH + "/badge.svg")
    assert status == 200 and f"green {c[:7]}" in svg and svg.startswith("<svg")
    status, web_svg = await flow.get(QUEUE_PATH + "/badge.svg?project=web")
    assert f"green {c[:7]}" in web_svg


async def test_the_api_refuses_bad_names_and_says_unknown_queues(flow: Flow):
    assert (await flow.get("/api/v1/queues/gitlab/a/b/main/last-green"))[0] == 400
    assert (await flow.get("/api/v1/queues/forgejo/a/b/main/last-green?project=../x"))[0] == 400
    status, doc = await flow.get("/api/v1/queues/forgejo/nobody/nothing/main/last-green")
    assert status == 404 and "no commit" in doc["detail"]
    status, svg = await flow.get("/api/v1/queues/forgejo/nobody/nothing/main/badge.svg")
    assert status == 200 and "no data" in svg


async def test_ciadm_shows_last_green_and_the_hooks_delivery_log(flow: Flow):
    a, b = sha("ca"), sha("cb")
    flow.commit(a, (), ("README",), "build")
    flow.commit(b, (a,), ("README",), "build")
    for commit, outcome in ((a, OK), (b, FAIL)):
        await flow.push(commit)
        await flow.take()
        await flow.finish(commit, {"build": outcome}, reason="" if outcome == OK else "exit status 2")
    await flow.greenness.round()  # delivers the hooks
    url = flow.stack.url
    code, out, err = await ciadm("last-green", "--integration", url, f"forgejo:{REPO}", "develop")
    assert code == 0, err
    assert f"last green: {a}" in out and f"newest:     {b} not green, degree 1.00" in out
    assert "build failed: exit status 2" in out and "became green" in out
    code, out, err = await ciadm("hooks", "--integration", url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["HOOK", "QUEUE", "#", "STATE"]
    assert [line.split()[2:4] for line in lines[1:]] == [["2", "not-green"], ["1", "green"]]
    assert all(line.split()[5:7] == ["delivered", "1"] for line in lines[1:])
    code, _, err = await ciadm("last-green", "--integration", url, "forgejo:nobody/nothing", "main")
    assert code == 1 and "no commit of forgejo:nobody/nothing:refs/heads/main is known" in err
