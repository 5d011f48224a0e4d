"""The node supervisor: labels from the driver's catalog, loud failure of a long-lived task,
one-line start-up errors from ``solstice-orchestrator serve``."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.catalog import LocalConfig
from orchestrator.node import NodeError
from orchestrator.node.testing import InstantDriver
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import job, local_node, local_settings
from tests.waiting import async_wait_until

EXE = Path(sys.executable).parent / "solstice-orchestrator"


def with_catalog(settings, labels: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """No node.labels; the instant driver's catalog (drivers.local.labels) names ``labels``."""
    local = LocalConfig(state_dir=settings.drivers.local.state_dir, labels=labels)
    return dataclasses.replace(settings, node=dataclasses.replace(settings.node, labels=()),
                               drivers=dataclasses.replace(settings.drivers, local=local))


async def test_without_node_labels_the_driver_catalog_is_served(tmp_path: Path) -> None:
    settings = with_catalog(local_settings(tmp_path), ("cat-1", "cat-2"))
    async with local_node(settings, InstantDriver(tmp_path / "vms", ("cat-1", "cat-2"))) as node:
        assert node.node.labels == ("cat-1", "cat-2")
        await node.publish(job("c", label="cat-2"))
        record = await async_wait_until(lambda: _terminal(node.store, "c"), what="the job")
        assert record.state is JobState.SUCCEEDED
        hosts = await node.store.list_hosts()
        assert [h.labels for h in hosts] == [("cat-1", "cat-2")]


async def _terminal(store, job_id):  # type: ignore[no-untyped-def]
    record = await store.get_job(job_id)
    return record if record is not None and record.terminal else None


async def test_no_labels_anywhere_is_a_one_line_error(tmp_path: Path) -> None:
    settings = with_catalog(local_settings(tmp_path), ())
    with pytest.raises(NodeError) as err:
        async with local_node(settings):
            pass
    assert "node.labels is empty" in str(err.value) and "\n" not in str(err.value)


class BrokenListing(InstantDriver):
    """A driver with a bug: listing its VMs raises something no loop expects, from the 2nd call."""

    calls = 0

    async def list_owned(self) -> set[str]:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("listing broke")
        return await super().list_owned()


async def test_a_long_lived_task_that_dies_fails_the_node_loudly(tmp_path: Path) -> None:
    from common.config import Seconds

    settings = local_settings(tmp_path, timers__reconcile=Seconds(0.1))
    async with local_node(settings, BrokenListing(tmp_path / "vms")) as node:
        with pytest.raises(NodeError) as err:
            await asyncio.wait_for(node.node.wait(), 30)
    assert str(err.value) == "reconciler stopped early: RuntimeError: listing broke"


async def test_serve_without_labels_prints_one_error_line(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(f"""\
store_url: "sqlite://{tmp_path}/state.db"
amqp_url: "{cluster.amqp}"
queue_prefix: "{cluster.prefix}"
data_dir: "{tmp_path / 'data'}"
node:
  host: lonely
grpc:
  listen: 127.0.0.1:0
drivers:
  driver: instant
  local:
    state_dir: "{tmp_path / 'vms'}"
""")
    result = await asyncio.to_thread(subprocess.run, [str(EXE), "serve", "--config", str(config)],
                                     capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert errors == ["ERROR: node.labels is empty and the instant driver's catalog names no label: "
                      "name the runs_on labels this node serves"]
    assert "Traceback" not in result.stderr


async def test_admin_answers_unavailable_in_one_line_when_the_store_is_gone(tmp_path: Path) -> None:
    import grpc

    from common.rpc import admin_pb2
    from tests.node.harness import admin_stub

    async with local_node(local_settings(tmp_path)) as node, admin_stub(node.node) as admin:
        await node.store.close()  # as good as a database that stopped answering
        for call in (admin.Get(admin_pb2.GetJobRequest(job_id="x")), admin.Hosts(admin_pb2.HostsRequest()),
                     admin.List(admin_pb2.ListJobsRequest())):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "closed" in err.value.details() and "\n" not in err.value.details()
        # the node's loops log and carry on: it does not die of a store outage
        assert not any(task.done() for task in node.node._loops.values())
