"""SIGTERM to a ``solstice-orchestrator serve`` process: it stops consuming, lets the running job
finish (or, past ``timers.shutdown_grace``, requeues it as a new attempt), and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from orchestrator.node.testing import recorded_vms
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import job
from tests.waiting import async_wait_until

EXE = Path(sys.executable).parent / "solstice-orchestrator"


def config(cluster: Cluster, host: str, grace: str) -> Path:
    root = cluster.root / host
    path = cluster.root / f"{host}.yaml"
    path.write_text(f"""\
store_url: "{cluster.pg}"
amqp_url: "{cluster.amqp}"
queue_prefix: "{cluster.prefix}"
data_dir: "{root}"
node:
  host: {host}
  labels: [lab-a]
  capacity: 2
grpc:
  listen: 127.0.0.1:0
drivers:
  driver: instant
  local:
    state_dir: "{root / 'vms'}"
timers:
  heartbeat: 0.2s
  cancel_poll: 0.1s
  shutdown_grace: {grace}
""")
    return path


@contextlib.asynccontextmanager
async def serving(cluster: Cluster, host: str, grace: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A serve process, started and announced; killed if the test leaves it running."""
    stderr = (cluster.root / f"{host}.stderr").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(EXE), "serve", "--config", str(config(cluster, host, grace)),
        stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert b"serving on" in line, (line, (cluster.root / f"{host}.stderr").read_text())
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr.close()


async def state_is(cluster: Cluster, job_id: str, state: JobState) -> None:
    async def check() -> bool:
        record = await cluster.store.get_job(job_id)
        return record is not None and record.state is state
    await async_wait_until(check, timeout=60, what=f"{job_id} {state.name.lower()}")


async def test_sigterm_lets_the_running_job_finish_and_exits_0(cluster: Cluster) -> None:
    async with serving(cluster, "term-a", grace="60s") as process:
        await cluster.publish(job("finishing", steps=("sleep 2",)))
        await state_is(cluster, "finishing", JobState.RUNNING)
        process.send_signal(signal.SIGTERM)
        stderr = cluster.root / "term-a.stderr"
        await async_wait_until(lambda: "stopped taking work" in stderr.read_text(), timeout=30,
                               what="the node to stop taking work")
        await cluster.publish(job("too-late"))
        assert await asyncio.wait_for(process.wait(), 60) == 0
    record = await cluster.store.get_job("finishing")
    assert record is not None and (record.state, record.attempt) == (JobState.SUCCEEDED, 1)
    await cluster.events.settled("finishing", [JobState.PROVISIONING, JobState.RUNNING, JobState.SUCCEEDED])
    # consumption stopped: the later request waits in the broker for another node
    assert await cluster.store.get_job("too-late") is None
    assert await cluster.ready("lab-a") == 1
    assert recorded_vms(cluster.root / "term-a" / "vms") == set()
    stderr = (cluster.root / "term-a.stderr").read_text()
    assert "Traceback" not in stderr


async def test_sigterm_past_the_grace_requeues_the_job_and_exits_0(cluster: Cluster) -> None:
    async with serving(cluster, "term-b", grace="0.5s") as process:
        await cluster.publish(job("unfinished", steps=("sleep 60",)))
        await state_is(cluster, "unfinished", JobState.RUNNING)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    record = await cluster.store.get_job("unfinished")
    assert record is not None and (record.state, record.attempt) == (JobState.QUEUED, 2)
    first = (await cluster.store.attempts("unfinished"))[0]
    assert first.state is JobState.ERRORED
    assert "host term-b shut down during attempt 1; requeued as attempt 2" in first.reason
    assert await cluster.ready("lab-a") == 1  # attempt 2 is back on the queue for another node
    assert recorded_vms(cluster.root / "term-b" / "vms") == set()  # its VM went with it
    # another node picks it up
    async with serving(cluster, "term-c", grace="5s"):
        await state_is(cluster, "unfinished", JobState.RUNNING)
        record = await cluster.store.get_job("unfinished")
        assert record is not None and (record.attempt, record.host) == (2, "term-c")
