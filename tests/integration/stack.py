"""A whole integration on loopback: fake forges, the real service and app, a real queue.

``IntegrationStack`` is also the helper for end-to-end tests: pass the
single-node server's publisher (its ``LocalQueue``) instead of RabbitMQ, send
signed deliveries with ``deliver_github`` / ``deliver_forgejo``, feed the
node's JobEvents to ``stack.integration.reporter.handle`` and look at what the
fakes recorded (``stack.github.check_run_statuses()``, ``stack.forgejo.statuses``).
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from common.queue import RabbitJobPublisher, Topology
from common.queue.codec import decode_job_request
from common.queue.publisher import JobPublisher
from common.rpc import jobs_pb2
from integration.app import make_app
from integration.cancel import JobCanceller, JobRetrier, LoggingCanceller
from integration.external.settings import ExternalSettings
from integration.greenness.settings import GreennessSettings
from integration.httpserver import GuardedSite, HttpLimits, app_runner
from integration.runtime import Integration
from integration.settings import (
    ForgejoSettings,
    GitHubSettings,
    IntegrationSettings,
    ReportSettings,
    WebhookSettings,
)
from integration.signature import sign
from tests.fakes.forges import FakeForgejo, FakeGitHub
from tests.queue.broker import amqp_channel, messages_ready

GITHUB_SECRET = "gh-webhook-secret"
FORGEJO_SECRET = "fj-webhook-secret"
FORGEJO_TOKEN = "fj-api-token"
APP_ID = "4242"
PUBLIC_URL = "http://solstice.test"
LABEL = "illumos-stable"

WORKFLOW = """\
workflow name="Solstice CI" {
  job id="build" runs_on="illumos-stable" {
    step name="Test" run="cargo test --workspace"
  }
}
"""

# Two mistakes a forge check must show: an unknown property and a repeated job id.
INVALID = """\
workflow name="broken" {
  job id="build" runs_on="illumos-stable" {
    step name="Test" rnu="make test"
  }
  job id="build" runs_on="illumos-stable" {
    step run="true"
  }
}
"""


class RabbitQueue:
    """A ``RabbitJobPublisher`` on a fresh name prefix, with a way to read what it queued."""

    def __init__(self, url: str, labels: tuple[str, ...] = (LABEL,)) -> None:
        self.url = url
        self.labels = labels
        self.topology = Topology(prefix=f"ti{uuid.uuid4().hex[:10]}.")
        self.publisher = RabbitJobPublisher(url, self.topology)

    async def start(self) -> None:
        await self.publisher.start()
        async with amqp_channel(self.url) as channel:
            for label in self.labels:
                await self.topology.declare_label_queue(channel, label)

    async def count(self, label: str = LABEL) -> int:
        return await messages_ready(self.url, self.topology.label_queue(label))

    async def take(self, label: str = LABEL) -> list[jobs_pb2.JobRequest]:
        """Remove and decode every request waiting in ``label``'s queue."""
        taken = []
        async with amqp_channel(self.url) as channel:
            queue = await channel.declare_queue(self.topology.label_queue(label), passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                taken.append(decode_job_request(message.body))
        return taken

    async def close(self) -> None:
        await self.publisher.close()


class IntegrationStack:
    def __init__(
        self,
        tmp: Path,
        fixtures: Path,
        app_key: tuple[bytes, bytes],
        publisher: JobPublisher,
        webhooks: WebhookSettings = WebhookSettings(),
        report: ReportSettings = ReportSettings(attempts=3, backoff_initial=0.01, backoff_max=0.05, request_timeout=2),
        store: str | None = None,
        middlewares: tuple[Any, ...] = (),
        retrier: JobRetrier | None = None,
        http: HttpLimits = HttpLimits(),
        external: ExternalSettings = ExternalSettings(),
        canceller: JobCanceller | None = None,
        greenness: GreennessSettings = GreennessSettings(),
    ) -> None:
        self.tmp = tmp
        private, public = app_key
        key_file = tmp / "app-key.pem"
        key_file.write_bytes(private)
        self.github = FakeGitHub(fixtures=fixtures / "forge" / "github", app_id=APP_ID, public_key=public)
        self.forgejo = FakeForgejo(fixtures=fixtures / "forge" / "forgejo", token=FORGEJO_TOKEN)
        self.publisher = publisher
        self.canceller = canceller or LoggingCanceller()
        self.retrier = retrier
        self._settings = dict(webhooks=webhooks, report=report, key_file=key_file,
                              store=store or str(tmp / "integration.sqlite"), http=http, external=external,
                              greenness=greenness)
        self.url = ""
        self.middlewares = middlewares  # extra aiohttp middlewares of the webhook app (bench timing)

    async def start(self) -> None:
        await self.github.start()
        await self.forgejo.start()
        s = self._settings
        self.settings = IntegrationSettings(
            github=GitHubSettings(GITHUB_SECRET, APP_ID, s["key_file"], self.github.url),
            forgejo=ForgejoSettings(FORGEJO_SECRET, self.forgejo.url, FORGEJO_TOKEN),
            webhooks=s["webhooks"],
            report=s["report"],
            http=s["http"],
            external=s["external"],
            greenness=s["greenness"],
            public_url=PUBLIC_URL,
            store=s["store"],
        )
        self.integration = Integration(self.settings, self.publisher, self.canceller, retrier=self.retrier)
        await self.integration.start()
        app = make_app(self.integration.service, self.settings.http)
        if self.integration.external is not None:
            self.integration.external.add_routes(app)  # out-of-tree CI, as solstice-integration serve mounts it
        if self.integration.greenness is not None:
            self.integration.greenness.add_routes(app)  # as solstice-integration serve mounts it
        app.middlewares.extend(self.middlewares)
        self.runner = app_runner(app, self.settings.http)
        await self.runner.setup()
        self.site = GuardedSite(self.runner, self.settings.http)
        await self.site.start()
        self.port = self.site.address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.client.close()
        await self.runner.cleanup()
        await self.integration.close()
        await self.forgejo.close()
        await self.github.close()

    async def post(self, path: str, body: bytes | io.BytesIO, headers: dict[str, str]) -> tuple[int, Any]:
        if isinstance(body, bytes) and len(body) > 1024 * 1024:
            body = io.BytesIO(body)  # aiohttp warns about big raw bytes; a stream still gets a Content-Length
        async with self.client.post(self.url + path, data=body, headers=headers) as answer:
            text = await answer.text()
            try:
                return answer.status, json.loads(text)
            except ValueError:
                return answer.status, text

    async def deliver_github(
        self, event: str, payload: dict[str, Any] | bytes, delivery: str | None = None,
        secret: str | None = GITHUB_SECRET, signature: str | None = None,
    ) -> tuple[int, Any]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
        }
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            headers["X-Hub-Signature-256"] = "sha256=" + sign(secret, body)
        return await self.post("/webhooks/github", body, headers)

    async def deliver_forgejo(
        self, event: str, payload: dict[str, Any] | bytes, delivery: str | None = None,
        secret: str | None = FORGEJO_SECRET, flavour: str = "Forgejo",
    ) -> tuple[int, Any]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {
            f"X-{flavour}-Event": event,
            f"X-{flavour}-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
        if secret is not None:
            headers[f"X-{flavour}-Signature"] = sign(secret, body)
        return await self.post("/webhooks/forgejo", body, headers)
