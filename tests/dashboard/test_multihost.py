"""The dashboard on the integration's HTTP side (multi-host): PostgreSQL state; its buttons act through a
node's AdminService (the integration's admin link), whose outbox queues the re-run on RabbitMQ."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from aiohttp.test_utils import TestClient, TestServer

from common.logbatch import STDOUT
from dashboard.adminlogs import AdminLogs
from dashboard.app import Dashboard
from dashboard.logsource import LogMissing
from dashboard.settings import DashboardSettings
from integration.app import make_app
from integration.dashboard import open_dashboard
from integration.runtime import Integration
from integration.settings import AdminLinkSettings, IntegrationSettings
from orchestrator.operators import OperatorTokens, Role
from orchestrator.store import JobState, open_store
from tests.dashboard.support import drive, request, write_log
from tests.integration.stack import LABEL, RabbitQueue
from tests.node.harness import node_settings, running_node


async def test_the_integration_serves_the_dashboard_over_the_cluster_s_store(
        tmp_path: Path, pg_database: str, amqp_vhost_url: str) -> None:
    queue = RabbitQueue(amqp_vhost_url)
    await queue.start()
    # A node of the cluster (serving another label: the re-run job stays in its queue for the test).
    node_config = node_settings(pg_database, amqp_vhost_url, tmp_path, queue.topology.prefix, labels=("lab-other",))
    try:
        async with running_node(node_config) as node, open_store(pg_database) as store:
            settings = IntegrationSettings(store=str(tmp_path / "integration.sqlite"), amqp_url=amqp_vhost_url,
                                           queue_prefix=queue.topology.prefix, public_url="https://ci.example.org",
                                           dashboard=DashboardSettings(store_url=pg_database),
                                           admin=AdminLinkSettings(address=node.admin_socket))
            waiting, done = request("job-waiting", "build", "d" * 40), request("job-done", "test", "d" * 40)
            waiting.runs_on = done.runs_on = LABEL
            await store.submit(waiting)
            await store.submit(done)
            await drive(store, "job-done", JobState.FAILED)
            # A job this node ran and logged: its log is the node's, read through the admin link.
            logged = request("job-logged", "lint", "d" * 40)
            logged.runs_on = LABEL
            await store.submit(logged)
            assert await store.claim("job-logged", 1, node.host, "vm-logged-1")
            assert await store.transition("job-logged", 1, JobState.RUNNING)
            await write_log(node.parts.gateway.logstore, "job-logged", 1,
                            [(0, STDOUT, b"lint: 3 files\nlint: <all clean>")])
            assert await store.transition("job-logged", 1, JobState.SUCCEEDED)
            token, _ = await OperatorTokens(store).create("olga", Role.OPERATE)
            async with Integration(settings, queue.publisher) as integration, \
                    open_dashboard(settings) as (dashboard, metrics):
                assert dashboard is not None
                client = TestClient(TestServer(make_app(integration.service, settings.http, metrics, dashboard)))
                await client.start_server()
                try:
                    summary = await (await client.get("/")).text()
                    assert ">acme/widgets</a>" in summary
                    page = await (await client.get("/jobs/job-waiting")).text()
                    assert "ciadm logs" not in page  # no log yet, and none said to be elsewhere
                    page = await (await client.get("/jobs/job-logged")).text()
                    assert "lint: 3 files" in page and "lint: &lt;all clean&gt;" in page  # escaped, as every line
                    logs = integration_logs(dashboard)
                    found = await logs.read("job-logged", 1, 2, 10)
                    assert [line.text() for line in found.lines] == ["lint: <all clean>"] and found.closed
                    async with contextlib.aclosing(logs.follow("job-logged", 1, 1)) as follow:
                        followed = [line.text() async for batch in follow for line in batch]
                    assert followed == ["lint: 3 files", "lint: <all clean>"]
                    with pytest.raises(LogMissing):  # queued: no attempt has logged anything yet
                        await logs.read("job-waiting", 1, 0, 10)
                    scraped = await (await client.get("/metrics")).text()
                    assert f'solstice_queue_jobs{{label="{LABEL}"}} 1.0' in scraped
                    origin = {"Origin": "https://ci.example.org"}  # public_url is this site
                    signed = await client.post("/signin", data={"token": token}, headers=origin,
                                               allow_redirects=False)
                    assert signed.status == 303
                    page = await (await client.get("/jobs/job-waiting")).text()
                    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
                    cancelled = await client.post("/jobs/job-waiting/cancel", data={"csrf": csrf}, headers=origin,
                                                  allow_redirects=False)
                    assert cancelled.status == 303
                    assert (await store.get_job("job-waiting")).state is JobState.CANCELLED
                    retried = await client.post("/jobs/job-done/retry", data={"csrf": csrf}, headers=origin,
                                                allow_redirects=False)
                    assert retried.status == 303
                    assert (await store.get_job("job-done")).attempt == 2
                    assert [r.job_id for r in await queue.take()] == ["job-done"]  # queued for a node again
                finally:
                    await client.close()
    finally:
        await queue.close()


def integration_logs(dashboard: Dashboard) -> AdminLogs:
    assert dashboard.backing is not None
    logs = dashboard.backing.logs
    assert isinstance(logs, AdminLogs)  # the admin link reads the cluster's logs
    return logs


async def test_without_a_store_url_the_integration_serves_no_dashboard(tmp_path: Path) -> None:
    settings = IntegrationSettings(store=str(tmp_path / "integration.sqlite"))
    async with open_dashboard(settings) as (dashboard, metrics):
        assert dashboard is None and metrics.sources == []
