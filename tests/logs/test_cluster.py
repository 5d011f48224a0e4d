"""Any node serves any job's log: a three-node cluster on real PostgreSQL and RabbitMQ.

Nodes ``node-a``, ``node-b`` and ``node-c`` run in this process (tests/node/harness.py),
each serving a label of its own, so the test knows where a job runs; every one
has a peer listener and the cluster's peer key. They read, through their
AdminService:

* a finished job's log (archived: read from the archive by the nodes that did
  not run it, from its files by the one that did);
* a running job's log, followed from the start: node-a does not ship it to the
  archive until it ends (a long ``archive_interval``), so the other nodes can
  only have its first half by forwarding to node-a;
* the log of a job whose host was SIGKILLed mid-run (a ``solstice-orchestrator
  serve`` process, ``victim``): after the requeue, attempt 1 reads as far as it
  reached the archive and says where it ended, attempt 2 (run by the victim's
  replacement) whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from common.config import Seconds
from common.rpc import admin_pb2
from orchestrator.logstore.settings import LogsConfig, write_key
from orchestrator.logstore.sqlarchive import SqlLogArchive
from orchestrator.node import Node
from orchestrator.store import JobState
from tests.logs.pages import collect, lines_of
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, job
from tests.waiting import async_wait_until

EXE = Path(sys.executable).parent / "solstice-orchestrator"


def numbers(first: int, last: int) -> list[bytes]:
    return [b"%d" % n for n in range(first, last + 1)]


@contextlib.asynccontextmanager
async def three_nodes(cluster: Cluster, key: Path, slow_shipper: str = "") -> AsyncIterator[dict[str, Node]]:
    async with contextlib.AsyncExitStack() as stack:
        nodes = {}
        for name, label in (("node-a", "lab-a"), ("node-b", "lab-b"), ("node-c", "lab-c")):
            interval = 600.0 if name == slow_shipper else 0.2
            logs = LogsConfig(peer_listen="127.0.0.1:0", peer_key_file=key, archive_interval=Seconds(interval),
                              keepalive=Seconds(1))
            settings = cluster.settings(host=name, labels=(label,), logs=logs)
            nodes[name] = await stack.enter_async_context(cluster.node(settings))
        yield nodes


async def read(node: Node, job_id: str, attempt: int = 0, follow: bool = False) -> list[admin_pb2.LogPage]:
    async with admin_stub(node) as admin:
        request = admin_pb2.TailLogsRequest(job_id=job_id, attempt=attempt, follow=follow)
        return await collect(admin.TailLogs(request))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "peer.key"
    write_key(path)
    return path


async def test_finished_and_running_logs_read_through_every_node(cluster: Cluster, key: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with three_nodes(cluster, key, slow_shipper="node-a") as nodes:
        await cluster.publish(job("done", label="lab-b", steps=("seq 1 30000",)))
        assert (await cluster.finished("done")).host == "node-b"
        for name, node in nodes.items():
            pages = await read(node, "done")
            assert [ln.content for ln in lines_of(pages)] == numbers(1, 30000), name
            assert pages[0].attempt == 1 and pages[-1].end and not pages[-1].ended, name

        # running on node-a, which ships nothing to the archive until the job ends
        start = tmp_path / "start"
        await cluster.publish(job("live", label="lab-a", steps=(f"wait {start}", "seq 1 20000", f"wait {gate}",
                                                                 "seq 20001 40000")))
        await async_wait_until(lambda: cluster.store.get_job("live"), what="node-a to take the job")
        followers = {name: asyncio.create_task(read(node, "live", follow=True)) for name, node in nodes.items()}
        start.touch()  # the followers were there before the first line
        async with admin_stub(nodes["node-c"]) as admin:
            async def first_half() -> bool:
                try:
                    pages = await collect(admin.TailLogs(admin_pb2.TailLogsRequest(job_id="live")))
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.NOT_FOUND  # no line logged yet
                    return False
                return [ln.content for ln in lines_of(pages)] == numbers(1, 20000) and not pages[-1].end
            await async_wait_until(first_half, timeout=30, what="node-c to read the first half from node-a")
        archive = SqlLogArchive(cluster.store.backend)  # type: ignore[attr-defined]
        assert await archive.state("live", 1) is None  # so node-c had it from node-a itself
        record = await cluster.store.get_job("live")
        assert record is not None and record.state is JobState.RUNNING and record.host == "node-a"
        gate.touch()
        for name, follower in followers.items():
            pages = await asyncio.wait_for(follower, 60)
            assert [ln.content for ln in lines_of(pages)] == numbers(1, 40000), name
            assert pages[-1].end and not pages[-1].ended, name
        await cluster.finished("live")
        await async_wait_until(lambda: _complete(archive, "live", 1), timeout=30, what="the log archived")


async def _complete(archive: SqlLogArchive, job_id: str, attempt: int) -> bool:
    state = await archive.state(job_id, attempt)
    return state is not None and state.complete


def victim_yaml(cluster: Cluster, key: Path, root: Path) -> str:
    return f"""\
store_url: "{cluster.pg}"
amqp_url: "{cluster.amqp}"
queue_prefix: "{cluster.prefix}"
data_dir: "{root / 'victim'}"
node:
  host: victim
  labels: [lab-v]
grpc:
  listen: 127.0.0.1:0
drivers:
  driver: instant
  local:
    state_dir: "{root / 'victim' / 'vms'}"
timers:
  heartbeat: 0.2s
  stale_after: 2s
logs:
  archive_interval: 0.2s
  peer_listen: 127.0.0.1:0
  peer_key_file: "{key}"
  keepalive: 1s
"""


async def test_a_killed_hosts_attempt_reads_to_where_it_ended_and_the_requeued_one_whole(
        cluster: Cluster, key: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    config = tmp_path / "victim.yaml"
    config.write_text(victim_yaml(cluster, key, tmp_path))
    out = (tmp_path / "victim.out").open("wb")
    victim = subprocess.Popen([str(EXE), "serve", "--config", str(config), "--log-format", "json"],
                              stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    archive = SqlLogArchive(cluster.store.backend)  # type: ignore[attr-defined]
    try:
        output = tmp_path / "victim.out"
        await async_wait_until(lambda: victim.poll() is None and b"serving on" in output.read_bytes(),
                               timeout=60, what="the victim node to serve")
        async with three_nodes(cluster, key) as nodes:
            await cluster.publish(job("lost", label="lab-v", steps=("seq 1 25000", f"wait {gate}")))

            async def shipped() -> bool:
                state = await archive.state("lost", 1)
                return state is not None and state.lines == 25000
            await async_wait_until(shipped, timeout=60, what="the victim to ship its lines")
            victim.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.wait, 30)
            gate.touch()

            async def requeued() -> bool:
                record = await cluster.store.get_job("lost")
                return record is not None and record.attempt == 2
            await async_wait_until(requeued, timeout=60, what="the lost attempt requeued")
            # a node serving lab-v again (the victim's replacement) runs attempt 2
            logs = nodes["node-c"].settings.logs  # the cluster's peer key, archive and timers
            async with cluster.node(cluster.settings(host="node-v", labels=("lab-v",), logs=logs)):
                record = await cluster.finished("lost", timeout=60)
                assert record.attempt == 2 and record.state is JobState.SUCCEEDED
                for name, node in nodes.items():
                    first = await read(node, "lost", attempt=1)
                    assert [ln.content for ln in lines_of(first)] == numbers(1, 25000), name
                    assert first[0].attempt == 1 and first[-1].end, name
                    assert "ends here, after line 25000: host victim stopped" in first[-1].ended, name
                    second = await read(node, "lost", attempt=2)
                    assert [ln.content for ln in lines_of(second)] == numbers(1, 25000), name
                    assert second[0].attempt == 2 and second[-1].end and not second[-1].ended, name
                    current = await read(node, "lost")  # no attempt named: the current one
                    assert current[0].attempt == 2, name
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(30)
        out.close()
