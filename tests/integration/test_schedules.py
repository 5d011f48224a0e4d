"""Workflow schedules: registered from a push, one run per tick across replicas, one run after an outage."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.cron import parse_cron
from integration.schedules import schedule_lines
from integration.store import SeenStore, open_store
from integration.store.schedulesql import schedule_key
from tests.integration.stack import IntegrationStack, RabbitQueue

GH_REPO = "Codertocat/Hello-World"
PUSHED = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"  # push.new-branch's commit on master
HEAD = "1111111111111111111111111111111111111111"  # master's head when the schedule fires
NIGHTLY = """\
workflow name="nightly" {
  on schedule="0 3 * * *" branch="master"
  on schedule="0 4 * * *" branch="some-other-branch"
  job id="build" runs_on="illumos-stable" {
    step run="make"
  }
}
"""
CRON = parse_cron("0 3 * * *")


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "seen.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_database")


async def test_three_replicas_race_for_a_tick_and_one_wins(store_spec: str):
    stores: list[SeenStore] = [open_store(store_spec) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        first = stores[0]
        await first.replace_schedules("github", "o/r", "https://x/o/r.git", 7, "main", [("0 3 * * *", 100.0)])
        key = schedule_key("github", "o/r", "main", "0 3 * * *")
        taken = await asyncio.gather(*(s.take_tick(key, 200.0, 201.0) for s in stores))
        assert sorted(taken) == [False, False, True]
        assert not await first.take_tick(key, 200.0, 202.0)  # the same tick, again
        # A run that could not start gives its tick back; a later tick taken since is kept.
        await first.give_back(key, 200.0, 100.0, "GitHub is down")
        [record] = await first.schedules()
        assert (record.last_tick, record.last_run_at, record.last_error, record.installation_id) == (
            100.0, 0.0, "GitHub is down", 7)
        assert await stores[1].take_tick(key, 200.0, 203.0)
        # Registering again keeps how far a schedule got; a schedule no longer in the workflow goes.
        await first.replace_schedules("github", "o/r", "https://x/o/r.git", 8, "main",
                                      [("0 3 * * *", 150.0), ("@hourly", 160.0)])
        assert sorted((r.cron, r.last_tick, r.installation_id) for r in await first.schedules()) == [
            ("0 3 * * *", 200.0, 8), ("@hourly", 160.0, 8)]
        await first.replace_schedules("github", "o/r", "https://x/o/r.git", 8, "main", [])
        assert await first.schedules() == []
    finally:
        for store in stores:
            await store.close()


@contextlib.asynccontextmanager
async def replicas(tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes], queue: RabbitQueue,
                   store: str, count: int) -> AsyncIterator[list[IntegrationStack]]:
    """``count`` integration replicas sharing one store (each with its own forge fakes and HTTP side)."""
    async with contextlib.AsyncExitStack() as stack:
        made = []
        for n in range(count):
            (tmp_path / f"r{n}").mkdir()
            one = IntegrationStack(tmp_path / f"r{n}", fixtures_dir, app_key, queue.publisher, store=store)
            await one.start()
            stack.push_async_callback(one.close)
            one.github.install(GH_REPO, 1)
            one.github.branches[(GH_REPO, "master")] = HEAD
            one.github.put_file(GH_REPO, HEAD, NIGHTLY)
            made.append(one)
        yield made


async def test_a_tick_runs_once_across_three_replicas_and_once_after_an_outage(
        tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes], queue: RabbitQueue, payload,
        pg_database: str):
    async with replicas(tmp_path, fixtures_dir, app_key, queue, pg_database, 3) as nodes:
        nodes[0].github.put_file(GH_REPO, PUSHED, NIGHTLY)
        status, answer = await nodes[0].deliver_github("push", payload("github/push.new-branch"))
        assert status == 202, answer
        assert len(await queue.take()) == 1  # the push's own run
        # Only master's schedule is taken from master's workflow.
        [record] = await nodes[0].integration.store.schedules()
        assert (record.repo, record.branch, record.cron) == (GH_REPO, "master", "0 3 * * *")
        registered_at = time.time()
        clock = [registered_at]
        for node in nodes:
            assert node.integration.schedules is not None
            node.integration.schedules.clock = lambda: clock[0]

        async def every_replica() -> int:
            fired = await asyncio.gather(*(n.integration.schedules.run_due() for n in nodes))  # type: ignore[union-attr]
            return sum(len(f) for f in fired)

        assert await every_replica() == 0  # registered after the last tick: nothing is due yet
        tick = CRON.next(registered_at)
        assert tick is not None
        clock[0] = tick + 20
        assert await every_replica() == 1
        [request] = await queue.take()
        assert request.checkout.sha == HEAD and request.checkout.ref == "refs/heads/master"
        assert request.origin == "schedule 0 3 * * *" and request.key == "build"
        assert await every_replica() == 0  # the same tick, a pass later
        # Every replica down for three days and two hours: three ticks missed, one run when they are back.
        clock[0] = tick + 3 * 86400 + 2 * 3600
        assert await every_replica() == 1
        [late] = await queue.take()
        assert late.checkout.sha == HEAD and late.run_id != request.run_id
        assert await every_replica() == 0
        [record] = await nodes[1].integration.store.schedules()
        assert record.last_tick == tick + 3 * 86400 and record.last_error == ""
        assert await queue.count() == 0
        # What an operator sees: solstice-integration schedules.
        header, row = await schedule_lines(nodes[2].settings, now=clock[0])
        assert header.split()[:4] == ["FORGE", "REPOSITORY", "BRANCH", "SCHEDULE"]
        assert row.split()[:3] == ["github", GH_REPO, "master"] and "0 3 * * *" in row
        assert time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(tick + 4 * 86400)) in row  # the next tick
