"""The single node's queue: publishing before the node consumes, every label or a list, pause on shutdown."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from common.queue.disposition import Disposition
from common.rpc import jobs_pb2
from orchestrator.singlenode.queue import SingleNodeQueue
from tests.queue.conftest import job
from tests.waiting import async_wait_until


class Node:
    """Records what the queue hands it; ``hold`` keeps on_job running until released."""

    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.dead: list[tuple[str | None, str]] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def on_job(self, request: jobs_pb2.JobRequest) -> Disposition:
        self.jobs.append(request.job_id)
        await self.hold.wait()
        return Disposition.ACK

    async def on_dead(self, job_id: str | None, reason: str) -> None:
        self.dead.append((job_id, reason))


async def test_every_label_is_taken_once_the_intake_starts(tmp_path: Path) -> None:
    node = Node()
    async with SingleNodeQueue(tmp_path / "q.sqlite", (), every_label=True) as queue:
        await queue.publish([job("j1", "illumos-stable"), job("j2", "windows-11")])  # before the node consumes
        intake = queue.intake(("*",), node.on_job, node.on_dead, 4)
        assert node.jobs == []
        await intake.start()
        await async_wait_until(lambda: sorted(node.jobs) == ["j1", "j2"], what="both labels delivered")
        assert await queue.dead_letters() == []
        await intake.stop(grace=5)


async def test_a_label_list_dead_letters_the_rest_to_the_node(tmp_path: Path) -> None:
    node = Node()
    async with SingleNodeQueue(tmp_path / "q.sqlite", ("ubuntu-22.04",), every_label=False) as queue:
        await queue.publish([job("ok", "ubuntu-22.04"), job("nope", "windows-11")])
        intake = queue.intake(("ubuntu-22.04",), node.on_job, node.on_dead, 4)
        await intake.start()
        await async_wait_until(lambda: node.jobs == ["ok"] and len(node.dead) == 1, what="delivery and dead letter")
        assert node.dead[0][0] == "nope" and "windows-11" in node.dead[0][1]
        await intake.stop(grace=5)


async def test_pause_stops_deliveries_but_not_publishing_and_a_restart_delivers(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    node = Node()
    async with SingleNodeQueue(path, (), every_label=True) as queue:
        intake = queue.intake(("*",), node.on_job, node.on_dead, 4)
        await intake.start()
        await queue.publish([job("before")])
        await async_wait_until(lambda: node.jobs == ["before"], what="the first delivery")
        await intake.stop(grace=5)
        await queue.publish([job("requeued")])  # what a stopping node hands back
    with sqlite3.connect(path) as db:  # stored, never handed out while paused
        assert db.execute("SELECT job_id, in_flight, deliveries FROM queue_jobs").fetchall() == [("requeued", 0, 0)]
    assert node.jobs == ["before"]
    later = Node()
    async with SingleNodeQueue(path, (), every_label=True) as queue:
        intake = queue.intake(("*",), later.on_job, later.on_dead, 4)
        await intake.start()
        await async_wait_until(lambda: later.jobs == ["requeued"], what="the requeued job after a restart")
        await intake.stop(grace=5)
