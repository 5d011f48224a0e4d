"""``/metrics``: parsed with prometheus-client's own parser, every metric present and moving when jobs run.

The end-to-end test runs a real ``solstice serve`` (local driver); the forge calls, the runner
reconnects and a node's own listener are driven through the real parts that record them.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from common.metrics import BoundedLabels
from integration.errors import ForgeRejected, ForgeUnavailable
from integration.forges.http import ForgeHttp, RetryPolicy
from orchestrator.node.serve import metrics_listener
from orchestrator.node.settings import MetricsConfig, NodeSettings
from orchestrator.store import open_store
from tests.dashboard.support import request
from tests.protocol.harness import assigned, bearer, orchestrator, stub
from tests.protocol.test_server import STEPS, batch
from tests.singlenode.harness import ServeProcess, git_repo
from tests.waiting import wait_until

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]

WORKFLOW = """\
workflow name="metrics" {
  job id="slow" runs_on="ubuntu-22.04" {
    step name="Wait" run="echo waiting; while [ ! -e {marker} ]; do sleep 0.1; done; echo done"
  }
  job id="quick" runs_on="ubuntu-22.04" {
    step name="Print" run="for i in 1 2 3 4 5; do echo line $i; done"
  }
}
"""


def parse(text: str) -> Samples:
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        return parse(answer.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_metrics_of_a_single_node_move_as_jobs_run(tmp_path: Path, job_dir: Path) -> None:
    marker = job_dir / "go"  # the contained job's user must see it
    repo = git_repo(tmp_path / "repo", WORKFLOW.replace("{marker}", str(marker)))
    with ServeProcess(tmp_path / "data", env={"SOLSTICE_CAPACITY": "1"}) as node:
        url = node.url + "/metrics"
        before = scrape(url)
        assert value(before, "solstice_capacity_slots") == 1 and value(before, "solstice_capacity_used_slots") == 0
        jobs = {job["key"]: job["job_id"] for job in node.ciadm_json("submit", cwd=repo)}
        # one slot: the slow job runs, the quick one waits - the store's gauges say so
        def one_running_one_queued() -> Samples | None:
            now = scrape(url)
            busy = value(now, "solstice_queue_jobs", label="ubuntu-22.04") == 1
            return now if busy and value(now, "solstice_capacity_used_slots") == 1 else None

        waiting = wait_until(one_running_one_queued, 60, "one job running and one queued")
        assert value(waiting, "solstice_jobs", state="queued", label="ubuntu-22.04") == 1
        assert sum(value(waiting, "solstice_jobs", state=state, label="ubuntu-22.04")
                   for state in ("provisioning", "running")) == 1
        assert value(waiting, "solstice_queue_oldest_age_seconds", label="ubuntu-22.04") >= 0
        marker.touch()  # the slow job ends
        for job_id in jobs.values():
            node.wait_state(job_id, "succeeded", timeout=90)
        after = scrape(url)
        # an unconfigured forge's webhook is answered (and counted)
        post = urllib.request.Request(node.url + "/webhooks/github", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(post, timeout=10)
        except urllib.error.HTTPError as err:
            assert err.code == 404
        webhooks = scrape(url)
    assert value(after, "solstice_jobs_finished_total", state="succeeded", label="ubuntu-22.04") - value(
        before, "solstice_jobs_finished_total", state="succeeded", label="ubuntu-22.04") == 2
    for name, labels in [("solstice_dispatch_latency_seconds_count", {"label": "ubuntu-22.04"}),
                         ("solstice_vm_boot_seconds_count", {"driver": "local"}),
                         *(("solstice_vm_phase_duration_seconds_count", {"driver": "local", "phase": phase})
                           for phase in ("prepare", "boot", "wait_ready", "stop", "destroy"))]:
        assert value(after, name, **labels) - value(before, name, **labels) == 2, (name, labels)
    assert total(after, "solstice_log_lines_total") - total(before, "solstice_log_lines_total") >= 7
    assert total(after, "solstice_log_bytes_total") - total(before, "solstice_log_bytes_total") >= 40
    assert value(after, "solstice_queue_jobs", label="ubuntu-22.04") == 0  # nothing waits any more
    assert value(after, "solstice_capacity_used_slots") == 0
    assert value(webhooks, "solstice_webhook_deliveries_total", forge="github", result="forge_not_configured") - value(
        after, "solstice_webhook_deliveries_total", forge="github", result="forge_not_configured") == 1
    assert value(after, "process_resident_memory_bytes") > 0
    # no label carries a job id
    assert not any(job_id in json.dumps(sorted(labels)) for (_, labels) in after for job_id in jobs.values())


async def test_forge_api_calls_are_counted_by_status(tmp_path: Path) -> None:
    answers = iter([500, 200, 404])

    async def forge(request: web.Request) -> web.Response:
        return web.json_response({"message": "x"}, status=next(answers))

    app = web.Application()
    app.router.add_get("/thing", forge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    before = parse((await _render()).decode())
    try:
        async with aiohttp.ClientSession() as session:
            http = ForgeHttp(session, "GitHub", RetryPolicy(attempts=2, backoff_initial=0.01, backoff_max=0.01))
            await http.request("GET", f"{base}/thing", what="read", headers={})  # 500, then 200
            try:
                await http.request("GET", f"{base}/thing", what="read", headers={})
            except ForgeRejected:
                pass
            closed = ForgeHttp(session, "GitHub", RetryPolicy(attempts=1))
            try:
                await closed.request("GET", "http://127.0.0.1:9/nothing", what="read", headers={})
            except ForgeUnavailable:
                pass
    finally:
        await runner.cleanup()
    after = parse((await _render()).decode())
    for code in ("500", "200", "404", "error"):
        assert value(after, "solstice_forge_api_calls_total", forge="github", code=code) - value(
            before, "solstice_forge_api_calls_total", forge="github", code=code) == 1, code


async def _render() -> bytes:
    from common.metrics.http import MetricsEndpoint

    return await MetricsEndpoint().render()


async def test_a_runner_reconnect_is_counted(tmp_path: Path) -> None:
    before = value(parse((await _render()).decode()), "solstice_runner_reconnects_total")
    async with orchestrator(tmp_path) as orch:
        session = orch.gateway.assign(assigned("job-a", STEPS))
        channel, client = stub(orch.server.address)
        async with channel:
            for first in (1, 4):
                call = client.StreamLogs(metadata=bearer(session.token))
                await call.read()
                await call.write(batch("job-a", first, 3))
                await call.read()
                await call.done_writing()
    assert value(parse((await _render()).decode()), "solstice_runner_reconnects_total") - before == 1


async def test_a_node_serves_metrics_on_its_own_listener(tmp_path: Path) -> None:
    settings = NodeSettings(metrics=MetricsConfig(listen="127.0.0.1:0"))
    async with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        await store.submit(request("job-q", "build", "f" * 40))
        async with metrics_listener(settings, store) as url:
            assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
            samples = await asyncio.to_thread(scrape, url)
        async with metrics_listener(NodeSettings(), store) as off:
            assert off == ""
    assert value(samples, "solstice_queue_jobs", label="ubuntu-22.04") == 1
    assert value(samples, "solstice_jobs", state="queued", label="ubuntu-22.04") == 1


def test_label_values_are_bounded() -> None:
    labels = BoundedLabels(limit=2)
    assert [labels(v) for v in ("a", "b", "c", "a", "")] == ["a", "b", "other", "a", "other"]


async def test_the_grafana_dashboard_and_the_docs_name_real_metrics(tmp_path: Path) -> None:
    """Every metric the example Grafana dashboard queries, and every one docs/metrics.md lists, is exported."""
    from common.metrics.http import MetricsEndpoint
    from orchestrator.metrics import store_families

    async with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        await store.submit(request("job-q", "build", "f" * 40))
        text = (await MetricsEndpoint([store_families(store)]).render()).decode()
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    root = Path(__file__).resolve().parents[2]
    grafana = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for panel in grafana["panels"] for t in panel["targets"]]
    queries.append(grafana["templating"]["list"][1]["query"]["query"])
    docs = (root / "docs" / "metrics.md").read_text()

    def family(name: str) -> str:
        for suffix in ("_bucket", "_count", "_sum", "_total"):
            if name.endswith(suffix) and name[: -len(suffix)] in exported:
                return name[: -len(suffix)]
        return name

    used = {family(m) for q in queries for m in re.findall(r"\bsolstice_[a-z_]+", q)}
    listed = {family(m) for m in re.findall(r"`(solstice_[a-z_]+)`", docs)}
    assert used and used <= exported, used - exported
    assert listed <= exported, listed - exported
    assert {name for name in exported if name.startswith("solstice_")} <= listed  # every one is documented
