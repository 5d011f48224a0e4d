"""Hooks: one signed delivery per transition, retried when the receiver fails, never reordered; command hooks.

The ordering and retry test runs on both back-ends; the others on SQLite.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from integration.greenness.hooks import HookSender
from integration.greenness.settings import GreennessSettings, HookSettings
from integration.greenness.store import SqlGreennessStore
from tests.integration.greenness.conftest import make_runner
from tests.integration.greenness.receiver import HookReceiver
from tests.integration.greenness.support import Clock, sha, workflow
from tests.waiting import async_wait_until

OK, FAIL = "succeeded", "failed"


@pytest.fixture
async def receiver() -> AsyncIterator[HookReceiver]:
    async with HookReceiver() as made:
        yield made


async def _drain(sender: HookSender, clock: Clock, done) -> None:
    async def round_() -> bool:
        await sender.deliver_due()
        clock.now += 60  # past any backoff: the clock is the test's
        return done()

    await async_wait_until(round_, timeout=20, what="the hook deliveries", interval=0.01)


async def test_each_transition_is_delivered_once_in_order_and_retried(gstore: SqlGreennessStore, clock: Clock,
                                                                      receiver: HookReceiver):
    settings = GreennessSettings(enabled=True, hook_backoff=1, hooks={
        "deploy": HookSettings(url=receiver.url + "/hook", secret=receiver.secret)})
    runner = make_runner(gstore, clock, settings)
    wf = workflow("build")
    commits = [sha(f"h{i}") for i in range(5)]
    for c in commits:
        await runner.push(c, wf)
    # green, green (last-green moves), red, red (no transition: still red), green
    for c, outcome in zip(commits, (OK, OK, FAIL, FAIL, OK), strict=True):
        await runner.finish(c, {"build": outcome})
        await runner.finish(c, {"build": outcome})  # a duplicate event: no new transition
    receiver.fail_next = 3  # the first transition fails three times before it gets through
    async with aiohttp.ClientSession() as session:
        sender = HookSender(settings, gstore, session, clock)
        await _drain(sender, clock, lambda: len(receiver.accepted) == 4)
        assert await sender.deliver_due() == 0  # nothing left
    got = [(d["transition"], d["state"], d["commit"], d["last_green"]) for d in receiver.accepted]
    assert got == [(1, "green", commits[0], commits[0]), (2, "green", commits[1], commits[1]),
                   (3, "not-green", commits[2], commits[1]), (4, "green", commits[4], commits[4])]
    assert receiver.bad_signatures == 0
    first = receiver.accepted[0]["delivery"]
    assert receiver.attempts[first] == 4  # retried with the same delivery id
    assert all(receiver.attempts[d["delivery"]] == 1 for d in receiver.accepted[1:])
    log = await gstore.deliveries("deploy")
    assert [(d.number, d.state) for d in reversed(log)] == [(n, "delivered") for n in (1, 2, 3, 4)]
    assert log[-1].attempts == 4 and log[-1].last_error == ""


async def test_a_wrong_secret_is_refused_and_kept_pending(sqlite_store: SqlGreennessStore, clock: Clock,
                                                         receiver: HookReceiver):
    settings = GreennessSettings(enabled=True, hooks={"deploy": HookSettings(url=receiver.url + "/hook",
                                                                             secret="not-the-secret")})
    runner = make_runner(sqlite_store, clock, settings)
    await runner.push(sha("w"), workflow("build"))
    await runner.finish(sha("w"), {"build": OK})
    async with aiohttp.ClientSession() as session:
        assert await HookSender(settings, sqlite_store, session, clock).deliver_due() == 0
    [entry] = await sqlite_store.deliveries()
    assert entry.state == "pending" and "answered 401" in entry.last_error and receiver.bad_signatures == 1


async def test_the_command_hook_gets_the_commit_and_degree_and_is_killed_at_its_timeout(
        sqlite_store: SqlGreennessStore, clock: Clock, tmp_path: Path):
    out = tmp_path / "env.json"
    record = (f"import json, os; open({str(out)!r}, 'a').write(json.dumps({{k: v for k, v in os.environ.items() "
              "if k.startswith('SOLSTICE_')}) + '\\n')")
    settings = GreennessSettings(enabled=True, hooks={
        "record": HookSettings(command=(sys.executable, "-c", record), timeout=10),
        "slow": HookSettings(command=(sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.3)})
    runner = make_runner(sqlite_store, clock, settings)
    c1 = sha("cmd")
    await runner.push(c1, workflow("build", "test"))
    await runner.finish(c1, {"build": OK, "test": FAIL})
    await runner.push(sha("cmd2"), workflow("build", "test"))
    await runner.finish(sha("cmd2"), {"build": OK, "test": OK})
    async with aiohttp.ClientSession() as session:
        sender = HookSender(settings, sqlite_store, session, clock)
        await _drain(sender, clock, lambda: out.exists() and len(out.read_text().splitlines()) == 1)
    [env] = [json.loads(line) for line in out.read_text().splitlines()]
    # The first commit was red from the start (no transition); the second turned the queue green.
    assert env["SOLSTICE_COMMIT"] == sha("cmd2") and env["SOLSTICE_DEGREE"] == "0"
    assert env["SOLSTICE_STATE"] == "green" and env["SOLSTICE_QUEUE"] == "forgejo:acme/app:refs/heads/main"
    assert env["SOLSTICE_TRANSITION"] == "1" and env["SOLSTICE_DELIVERY"].startswith("dlv-")
    assert "SOLSTICE_" not in "".join(k for k in env if not k.startswith("SOLSTICE_"))
    slow = [d for d in await sqlite_store.deliveries("slow")]
    assert slow and slow[0].state == "pending" and "did not finish within 0.3s" in slow[0].last_error
