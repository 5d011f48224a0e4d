"""Fixtures of the out-of-tree CI tests: an OIDC issuer with the test's own keys, a results server."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from integration.external.allowlist import RepoKey
from integration.external.levels import Level
from integration.external.records import DispatchRecord
from integration.external.service import ExternalCI
from integration.external.settings import ExternalSettings
from integration.httpserver import HttpLimits, harden
from integration.settings import IntegrationSettings
from tests.fakes.oidc import FakeOidcIssuer, new_key
from tests.fakes.serving import serve_on_loopback

AUDIENCE = "https://solstice.test"
UPSTREAM = "octo-org/octo-repo"
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
ALLOWLIST = """\
version: 1
upstreams:
  github:octo-org/octo-repo:
    acme/l1-ci: L1
    acme/l2-ci: L2
    acme/l3-ci: L3
    acme/l4-ci: L4
"""


@pytest.fixture(scope="session")
def oidc_keys() -> dict[str, rsa.RSAPrivateKey]:
    """Keys made once per run: key-1 is published from the start, key-2 only when a test rotates."""
    return {"key-1": new_key(), "key-2": new_key()}


@pytest.fixture
async def issuer(oidc_keys: dict[str, rsa.RSAPrivateKey]) -> AsyncIterator[FakeOidcIssuer]:
    async with FakeOidcIssuer(keys={"key-1": oidc_keys["key-1"]}, audience=AUDIENCE) as fake:
        yield fake


def external_settings(issuer: FakeOidcIssuer, allowlist: Path, **changes: Any) -> ExternalSettings:
    base = ExternalSettings(
        allowlist=str(allowlist), allow_http=True, oidc_issuer=issuer.issuer, oidc_jwks_url=issuer.jwks_url,
        oidc_audience=AUDIENCE, jwks_refresh_min_interval=60, rate_per_minute=600, rate_burst=50,
    )
    return dataclasses.replace(base, **changes)


def report_body(delivery: str = "github:d-1", **changes: Any) -> dict[str, Any]:
    """A valid in_progress report for the dispatch of ``delivery`` (run 4242, attempt 1, job test)."""
    body: dict[str, Any] = {
        "schema_version": 1, "delivery_id": delivery, "upstream": {"repo": UPSTREAM, "sha": SHA, "pr_number": 7},
        "run_id": "4242", "run_attempt": 1, "job_id": "test", "job_name": "Test float32", "status": "in_progress",
        "started_at": "2025-04-28T10:15:30Z",
    }
    for name, value in changes.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def completed(delivery: str = "github:d-1", **changes: Any) -> dict[str, Any]:
    return report_body(delivery, **{"status": "completed", "conclusion": "success", "started_at": None,
                                    "completed_at": "2025-04-28T10:45:12Z",
                                    "tests": {"passed": 8430, "failed": 2, "skipped": 20, "errors": 0},
                                    "artifact_url": "https://acme.example/ci/183512/", **changes})


class ResultsServer:
    """``ExternalCI`` alone on loopback (no forge): dispatch records made by the test, reports over HTTP."""

    def __init__(self, tmp: Path, issuer: FakeOidcIssuer, **changes: Any) -> None:
        self.tmp = tmp
        self.issuer = issuer
        self.allowlist = tmp / "allowlist.yaml"
        self.allowlist.write_text(ALLOWLIST)
        self.settings = IntegrationSettings(external=external_settings(issuer, self.allowlist, **changes),
                                            store=str(tmp / "integration.sqlite"), public_url=AUDIENCE)
        self.url = ""

    async def start(self) -> None:
        self.client = aiohttp.ClientSession()
        self.external = ExternalCI(self.settings, self.client)
        await self.external.start()
        app = web.Application()
        harden(app, HttpLimits())
        self.external.add_routes(app)
        self.runner, self.url = await serve_on_loopback(app)

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.external.close()
        await self.client.close()

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.external.store

    async def dispatch(self, downstream: str, delivery: str = "github:d-1", sha: str = SHA, pr: int = 7,
                       level: Level = Level.L2) -> DispatchRecord:
        """A dispatch record as the relay makes it (sent)."""
        now = time.time()
        record = DispatchRecord(f"dsp-{uuid.uuid4().hex}", delivery, RepoKey.parse(downstream),
                                RepoKey.parse(UPSTREAM), 7, sha, f"refs/pull/{pr}/head", pr, "pull_request",
                                "opened", level, "{}", next_at=now + 3600, created_at=now - 60)
        [made] = await self.store.record_dispatches([record], now + 3600)
        await self.store.dispatch_sent(made.id, now - 50)
        return made

    async def post(self, body: dict[str, Any] | bytes, token: str | None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.client.post(self.url + "/api/v1/results", data=data, headers=sent) as answer:
            return answer.status, await answer.json(), answer.headers

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.client.get(self.url + path) as answer:
            return answer.status, await answer.json()


@pytest.fixture
async def results(tmp_path: Path, issuer: FakeOidcIssuer) -> AsyncIterator[ResultsServer]:
    server = ResultsServer(tmp_path, issuer)
    await server.start()
    try:
        yield server
    finally:
        await server.close()
