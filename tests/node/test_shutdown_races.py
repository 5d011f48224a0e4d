"""Shutdown keeps what a job already did, and waits for what is being done.

* A job whose runner already completed is recorded with its outcome whatever the shutdown does:
  before, an abort that reached it in its teardown threw the outcome away, and the finished job
  was requeued and ran again.
* A claim in flight when an idle node shuts down is waited for: before, it committed after the
  node took its jobs back, and the attempt stayed ``provisioning`` on a node that had stopped
  (its lifecycle task running on after ``close``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.config import Seconds
from orchestrator.names import vm_name
from orchestrator.store import JobState
from tests.node.harness import job, local_node, local_settings
from tests.waiting import async_wait_until


async def test_a_finished_job_keeps_its_outcome_when_shutdown_aborts_its_teardown(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, timers__shutdown_grace=Seconds(0.2))
    async with local_node(settings) as node:
        vm = vm_name("done", 1)
        release = node.driver.hold_destroy[vm] = asyncio.Event()
        await node.publish(job("done", steps=("echo finished",)))
        await async_wait_until(lambda: ("destroy held", vm) in node.driver.events, what="its teardown")
        scheduler = node.node.scheduler
        assert scheduler is not None
        closing = asyncio.create_task(node.node.close())
        try:
            # The grace runs out while the VM is still being destroyed: the attempt is aborted.
            await async_wait_until(lambda: "done" in scheduler.active and scheduler.active["done"].control.aborted,
                                   what="the abort after the grace")
        finally:
            release.set()
            await closing
        attempts = await node.store.attempts("done")
        assert [(a.attempt, a.state) for a in attempts] == [(1, JobState.SUCCEEDED)]
        await async_wait_until(lambda: node.events.terminal("done"), what="its terminal event")
        [end] = node.events.terminal("done")
        assert JobState(end.state) is JobState.SUCCEEDED


async def test_shutdown_waits_for_a_claim_in_flight(tmp_path: Path) -> None:
    async with local_node(local_settings(tmp_path)) as node:
        store, scheduler = node.store, node.node.scheduler
        assert scheduler is not None
        claiming, may_commit = asyncio.Event(), asyncio.Event()
        submit_claimed, heartbeat = store.submit_claimed, store.heartbeat
        beats_while_stopping = 0

        async def held_claim(*args, **kwargs):  # type: ignore[no-untyped-def]
            claiming.set()
            await may_commit.wait()
            return await submit_claimed(*args, **kwargs)

        async def counted_heartbeat(*args, **kwargs):  # type: ignore[no-untyped-def]
            # The claim commits on the second heartbeat after shutdown began: well after the node
            # took its jobs back, unless shutdown waits for it.
            nonlocal beats_while_stopping
            if scheduler.stopping.is_set():
                beats_while_stopping += 1
                if beats_while_stopping >= 2:
                    may_commit.set()
            return await heartbeat(*args, **kwargs)

        store.submit_claimed = held_claim  # type: ignore[method-assign]
        store.heartbeat = counted_heartbeat  # type: ignore[method-assign]
        await node.publish(job("late", steps=("sleep 30",)))
        await async_wait_until(claiming.is_set, what="the claim in flight")
        await node.node.close()
        assert may_commit.is_set()
        assert scheduler.idle  # no attempt left running after close
        attempts = await store.attempts("late")
        # Claimed, then taken back as the node shut down: attempt 2 waits in the queue for the next start.
        assert [(a.attempt, a.state, a.host) for a in attempts] == [
            (1, JobState.ERRORED, "node-a"), (2, JobState.QUEUED, "")]
        assert node.driver.live == 0
