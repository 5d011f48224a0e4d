"""Artifacts across a cluster: two nodes (real PostgreSQL and RabbitMQ, the local driver with real
runners); the job that makes an artifact runs on one node, the job that needs it on the other, and
gets it from the artifact archive in the shared database."""

from __future__ import annotations

from pathlib import Path

from common.rpc import admin_pb2
from orchestrator.catalog import DriverConfig, LocalConfig
from orchestrator.singlenode.settings import installed_runner_argv
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, job
from tests.runner.helpers import make_repo


def _settings(cluster: Cluster, host: str, label: str):  # type: ignore[no-untyped-def]
    local = LocalConfig(state_dir=cluster.root / host / "vms", runner_argv=installed_runner_argv(), contain=False)
    return cluster.settings(host=host, labels=(label,), allow_local_checkouts=True,
                            drivers=DriverConfig(driver="local", local=local))


async def test_a_job_on_another_node_gets_the_artifact_it_needs(cluster: Cluster, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "x\n"})
    build = job("r-build", label="lab-a", run_id="r", key="build",
                steps=("mkdir -p dist && printf made-on-$(hostname)-a > dist/pkg.txt",))
    build.artifacts.add(name="dist", path="dist/*.txt")
    ship = job("r-ship", label="lab-b", run_id="r", key="ship", needs=("build",),
               steps=("cat dist/pkg.txt",))
    for request in (build, ship):
        request.checkout.clone_url, request.checkout.sha = repo.url, repo.sha
        request.trusted = True
    async with cluster.node(_settings(cluster, "node-a", "lab-a")) as node_a, \
            cluster.node(_settings(cluster, "node-b", "lab-b")):
        await cluster.publish(ship, build)
        built = await cluster.finished("r-build", 60)
        assert built.state is JobState.SUCCEEDED, built.reason
        done = await cluster.finished("r-ship", 60)
        assert (done.state, done.host) == (JobState.SUCCEEDED, "node-b"), done.reason
        assert not (cluster.root / "node-b" / "logs" / "r-build").exists()  # not on node-b's disk...
        async with admin_stub(node_a) as admin:  # ...but in the archive, which every node reads
            listed = await admin.ListArtifacts(admin_pb2.ListArtifactsRequest(job_id="r-build"))
            assert [(a.name, a.files) for a in listed.artifacts] == [("dist", 1)]
        pages = []
        async with admin_stub(node_a) as admin:
            async for page in admin.TailLogs(admin_pb2.TailLogsRequest(job_id="r-ship")):
                pages.append(page)
        text = b"\n".join(run.data for page in pages for run in page.runs)
        assert b"made-on-" in text and b'downloading artifact "dist" of job build: 1 files' in text
