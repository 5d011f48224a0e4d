"""L4 results on a Forgejo upstream: commit statuses, pending then final; a forge that is down is retried."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from integration.external.allowlist import RepoKey
from integration.external.levels import Level
from integration.external.records import ResultReport, SuiteSummary, Trusted
from integration.external.store import open_external_store
from integration.external.upstream_checks import UpstreamChecks
from integration.forges.forgejo_api import ForgejoClient
from integration.forges.http import ForgeHttp, RetryPolicy
from tests.fakes.forges import FakeForgejo

SHA = "bffeb74224043ba2feb48d137756c8a9331c449a"


async def test_an_l4_result_becomes_a_forgejo_commit_status(tmp_path: Path, fixtures_dir: Path):
    store = open_external_store(str(tmp_path / "x.sqlite"))
    await store.open()
    async with FakeForgejo(fixtures=fixtures_dir / "forge" / "forgejo", token="fj") as forgejo, \
            aiohttp.ClientSession() as session:
        client = ForgejoClient(ForgeHttp(session, "Forgejo", RetryPolicy(1, 0.01, 0.01, 5)), forgejo.url, "fj")
        checks = UpstreamChecks(store, None, client, retention=3600)
        trusted = Trusted(RepoKey.parse("acme/npu-ci"), Level.L4, "dsp-1", RepoKey.parse("forgejo:gitea/webhooks"),
                          SHA, 0, 0, time.time() - 10, time.time() - 9)
        running = ResultReport("forgejo:d-1", "gitea/webhooks", SHA, "9", 1, "test", "Test on NPU", "in_progress")
        try:
            await checks.show(trusted, running)
            forgejo.fail_next(1, status=502, path_contains="/statuses/")
            assert await checks.post_due() == 1  # the forge was down: kept for a retry
            [kept] = await store.take_due_upstream_checks(time.time() + 3600, 0, 10)
            assert kept.attempts == 1 and "502" in kept.last_error and kept.shown_rank == 0
            await store.upstream_check_retry(kept.key, kept.attempts, time.time(), kept.last_error)
            assert await checks.post_due() == 1
            done = ResultReport("forgejo:d-1", "gitea/webhooks", SHA, "9", 1, "test", "Test on NPU", "completed",
                                conclusion="timed_out", tests=SuiteSummary(1, 0, 0, 0),
                                artifact_url="https://acme.example/runs/9")
            await checks.show(trusted, done)
            assert await checks.post_due() == 1
            assert forgejo.statuses_of("external / acme/npu-ci / Test on NPU") == ["pending", "failure"]
            _, sha, body = forgejo.statuses[-1]
            assert (sha, body["target_url"]) == (SHA, "https://acme.example/runs/9")
            assert await checks.post_due() == 0  # shown: nothing more to do
        finally:
            await store.close()
