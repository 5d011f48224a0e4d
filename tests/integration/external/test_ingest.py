"""The dashboard served apart: the relay validates, then writes with a token scoped to the results write path."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from integration.external.allowlist import RepoKey
from integration.external.service import ExternalCI
from integration.external.settings import ExternalSettings
from integration.external.sink import INGEST_PATH, TOKEN_HEADER
from integration.httpserver import HttpLimits, harden
from integration.settings import IntegrationSettings
from tests.fakes.oidc import FakeOidcIssuer
from tests.fakes.serving import serve_on_loopback
from tests.integration.external.conftest import UPSTREAM, ResultsServer, completed, report_body

TOKEN = "results-write-token-" + "x" * 24


async def test_results_reach_the_dashboard_apart_and_only_with_its_token(tmp_path: Path, issuer: FakeOidcIssuer):
    (tmp_path / "relay").mkdir()
    settings = IntegrationSettings(external=ExternalSettings(ingest_token=TOKEN),
                                   store=str(tmp_path / "dashboard.sqlite"))
    async with aiohttp.ClientSession() as session:
        dashboard = ExternalCI(settings, session)
        await dashboard.start()
        app = web.Application()
        harden(app, HttpLimits())
        dashboard.add_routes(app)
        runner, url = await serve_on_loopback(app)
        relay = ResultsServer(tmp_path / "relay", issuer, results_forward_url=url, ingest_token=TOKEN)
        await relay.start()
        try:
            assert dashboard.results_api is None  # the dashboard takes no downstream reports itself
            await relay.dispatch("acme/l2-ci")
            token = issuer.mint("acme/l2-ci")
            status, answer, _ = await relay.post(report_body(), token)
            assert (status, answer["result"], answer["move"]) == (201, "accepted", "created")
            assert (await relay.post(completed(), token))[0] == 200
            [stored] = await dashboard.store.results_of_upstream(RepoKey.parse(UPSTREAM))
            assert (stored.status, stored.trusted.downstream, stored.trusted.level.name) == (
                "completed", RepoKey.parse("acme/l2-ci"), "L2")
            assert await relay.store.results_of_upstream(RepoKey.parse(UPSTREAM)) == []  # stored apart
            # The dashboard's state machine answers through the relay.
            status, answer, _ = await relay.post(completed(), token)
            assert (status, answer["reason"]) == (409, "conflict")
            # Without the token, or with another one, the write path is closed.
            for headers in ({}, {TOKEN_HEADER: "guess"}, {"Authorization": f"Bearer {TOKEN}"}):
                async with session.post(url + INGEST_PATH, json={"trusted": {}, "untrusted": {}},
                                        headers=headers) as refused:
                    assert refused.status == 401
            # The dashboard down: the relay says unavailable, nothing lost silently.
            await runner.cleanup()
            status, answer, headers = await relay.post(completed(job_id="other"), token)
            assert (status, answer["result"]) == (503, "unavailable") and headers["Retry-After"] == "30"
        finally:
            await relay.close()
            await runner.cleanup()
            await dashboard.close()
