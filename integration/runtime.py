"""``Integration``: the parts of the integration wired together from settings.

Used by ``solstice-integration serve`` (multi-host: RabbitMQ publisher) and by
the single-node server (its in-process queue as the publisher, its own
canceller). Lifetime: ``start()`` opens the store and the HTTP session and
builds the forge clients; ``service`` (webhooks) and ``reporter`` (job events)
are then ready; ``maintain()`` is a long-running task the owner supervises
(deferred-build retries, dedupe purge);
``close()`` releases everything. Also an async context manager.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from aiohttp import web

from common.lifecycle import StartClose
from common.log import masker
from common.queue.publisher import JobPublisher
from common.validation import CloneRules
from common.workflow.offload import WorkflowParser
from dashboard.links import github_web_url
from integration.cancel import JobCanceller, JobRetrier, LoggingCanceller
from integration.errors import IntegrationError
from integration.events import Forge
from integration.external.service import ExternalCI
from integration.forges.forgejo_api import ForgejoClient
from integration.forges.github_api import GitHubClient
from integration.forges.github_app import GitHubAppAuth, read_private_key
from integration.forges.http import ForgeHttp, RetryPolicy
from integration.greenness.service import Greenness
from integration.reporting.consumer import EventReporter
from integration.reporting.contract import ForgeReporter
from integration.reporting.forgejo import ForgejoReporter
from integration.reporting.github import GitHubReporter
from integration.schedules import BranchHeads, ScheduleRunner
from integration.service import ForgeLink, WebhookService
from integration.settings import IntegrationSettings
from integration.store import SeenStore, open_store
from integration.webhooks import add_webhook_routes

log = logging.getLogger(__name__)

PURGE_INTERVAL = 3600.0


class Integration(StartClose):
    """Webhook service + event reporter + store + forge clients for ``settings``."""

    def __init__(
        self,
        settings: IntegrationSettings,
        publisher: JobPublisher,
        canceller: JobCanceller | None = None,
        store: SeenStore | None = None,
        retrier: JobRetrier | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.canceller = canceller or LoggingCanceller()
        self.retrier = retrier  # None: re-run requests are logged (LoggingRetrier)
        self.store = store or open_store(settings.store)
        self._session: aiohttp.ClientSession | None = None
        self._service: WebhookService | None = None
        self._reporter: EventReporter | None = None
        self.github: GitHubClient | None = None
        self.forgejo: ForgejoClient | None = None
        self.parser = WorkflowParser(settings.workflow_limits)
        self.external: ExternalCI | None = None  # out-of-tree CI, when settings.external asks for it
        self.schedules: ScheduleRunner | None = None  # starts workflows' scheduled runs (integration/schedules.py)
        self.greenness: Greenness | None = None  # last-green per queue, when settings.greenness.enabled

    @property
    def service(self) -> WebhookService:
        if self._service is None:
            raise IntegrationError("the integration is not started")
        return self._service

    @property
    def reporter(self) -> EventReporter:
        if self._reporter is None:
            raise IntegrationError("the integration is not started")
        return self._reporter

    async def start(self) -> None:
        await self.store.open()
        try:
            await self.parser.start()
            self._session = aiohttp.ClientSession()
            self._wire(self._session)
            await self._start_external(self._session)
            await self._start_greenness(self._session)
        except BaseException:
            await self.close()
            raise

    def _wire(self, session: aiohttp.ClientSession) -> None:
        s = self.settings
        # Secrets must never reach a log line, whatever logs them.
        secrets = (s.github.webhook_secret, s.forgejo.webhook_secret, s.forgejo.token, s.admin.token)
        masker.add(*(v for v in secrets if v))
        policy = RetryPolicy(s.report.attempts, s.report.backoff_initial, s.report.backoff_max,
                             s.report.request_timeout, s.report.max_wait)
        links: dict[Forge, ForgeLink] = {}
        reporters: dict[str, ForgeReporter] = {}
        if s.github.app_id and s.github.private_key_file:
            http = ForgeHttp(session, "GitHub", policy)
            auth = GitHubAppAuth(http, s.github.api_url, s.github.app_id, read_private_key(s.github.private_key_file))
            self.github = GitHubClient(http, auth)
            github_reporter = GitHubReporter(self.github, s.public_url)
            links[Forge.GITHUB] = ForgeLink(self.github, github_reporter, self._clone_rules(s.github.api_url))
            reporters[Forge.GITHUB.value] = github_reporter
        elif s.github.enabled:
            log.warning(
                "GitHub webhooks are accepted but SOLSTICE_GITHUB_APP_ID / SOLSTICE_GITHUB_PRIVATE_KEY_FILE are "
                "not set: workflows cannot be read and no checks reported"
            )
        if s.forgejo.url:
            self.forgejo = ForgejoClient(ForgeHttp(session, "Forgejo", policy), s.forgejo.url, s.forgejo.token)
            forgejo_reporter = ForgejoReporter(self.forgejo, s.public_url)
            links[Forge.FORGEJO] = ForgeLink(self.forgejo, forgejo_reporter, self._clone_rules(s.forgejo.url))
            reporters[Forge.FORGEJO.value] = forgejo_reporter
        elif s.forgejo.enabled:
            log.warning("Forgejo webhooks are accepted but SOLSTICE_FORGEJO_URL is not set: workflows cannot be read")
        webhook_secrets = {Forge.GITHUB: s.github.webhook_secret, Forge.FORGEJO: s.forgejo.webhook_secret}
        self._service = WebhookService(
            s.webhooks, webhook_secrets, self.store, self.publisher, links, self.canceller, self.retrier,
            self.parser)
        self._reporter = EventReporter(self.store, reporters, s.report.give_up_after, lock_lease=s.report.lock_lease)
        heads: dict[Forge, BranchHeads] = {}
        if self.github is not None:
            heads[Forge.GITHUB] = self.github
        if self.forgejo is not None:
            heads[Forge.FORGEJO] = self.forgejo
        self.schedules = ScheduleRunner(self.store, heads, self._service.start_scheduled)

    async def _start_external(self, session: aiohttp.ClientSession) -> None:
        x = self.settings.external
        if not (x.relays or x.ingests):
            return
        self.external = ExternalCI(self.settings, session, self.github, self.forgejo)
        await self.external.start()
        # The webhook flow's one call into the relay, after the upstream's own build (integration.webhooks).
        self.service.relay = self.external.relay

    async def _start_greenness(self, session: aiohttp.ClientSession) -> None:
        g = self.settings.greenness
        if not g.enabled:
            return
        clients: dict[str, object] = {}
        clone_urls: dict[str, str] = {}
        if self.github is not None:
            clients[Forge.GITHUB.value] = self.github
            clone_urls[Forge.GITHUB.value] = github_web_url(self.settings.github.api_url)
        if self.forgejo is not None:
            clients[Forge.FORGEJO.value] = self.forgejo
            clone_urls[Forge.FORGEJO.value] = self.settings.forgejo.url.rstrip("/")
        self.greenness = Greenness(g, self.settings.store, session, clients, self.service.submit, clone_urls,
                                   self.settings.public_url)
        await self.greenness.start()
        # The build path's calls into greenness: the (queue, head) dedupe, expected jobs, incremental selection.
        self.service.greenness = self.greenness.recorder
        if self.external is not None:
            # Out-of-tree results that config names as required count towards their commit's degree.
            for sink in self.external.local_sinks:
                sink.completed = self.greenness.recorder.external_result

    def _clone_rules(self, forge_url: str) -> CloneRules:
        # A forge reached over plain http hands out http clone URLs; trusting
        # those adds nothing to what its API answers over http already decide.
        return CloneRules(allow_local=self.settings.webhooks.allow_local_checkouts,
                          allow_http=forge_url.lower().startswith("http://"))

    def add_routes(self, app: web.Application, prefix: str = "/webhooks") -> None:
        """Mount the webhook endpoints (and out-of-tree CI's, when on) on ``app`` (the single-node server's)."""
        add_webhook_routes(app, self.service, prefix)
        if self.external is not None:
            self.external.add_routes(app)
        if self.greenness is not None:
            self.greenness.add_routes(app)

    async def maintain(self, interval: float = PURGE_INTERVAL, retry_interval: float | None = None) -> None:
        """Forever (run it as a supervised task): retry due deferred builds every ``retry_interval`` s
        (default ``webhooks.retry_interval``) and purge expired dedupe claims every ``interval`` s.

        A round that fails - the store or the broker down, or anything else -
        is logged and the next one runs: an outage only delays deferred builds,
        it never ends the loop (and with it ``solstice-integration serve``).
        """
        retry_every = self.settings.webhooks.retry_interval if retry_interval is None else retry_interval
        next_purge = 0.0
        while True:
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + interval
                try:
                    purged = await self.store.purge_expired()
                    if purged:
                        log.info("expired dedupe keys purged", extra={"fields": {"count": purged}})
                except IntegrationError as err:
                    log.error("purging expired dedupe keys failed: %s", err)
            try:
                await self.service.retry_deferred()
            except IntegrationError as err:
                log.error("retrying deferred builds failed: %s", err)
            except Exception:  # noqa: BLE001 - one round's failure must not end the loop
                log.exception("retrying deferred builds failed")
            try:
                if self.schedules is not None:
                    await self.schedules.run_due()
            except IntegrationError as err:
                log.error("starting scheduled runs failed: %s", err)
            except Exception:  # noqa: BLE001 - likewise
                log.exception("starting scheduled runs failed")
            await asyncio.sleep(min(retry_every, interval))

    async def close(self) -> None:
        if self.greenness is not None:
            greenness, self.greenness = self.greenness, None
            await greenness.close()
        if self.external is not None:
            external, self.external = self.external, None
            await external.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        await self.parser.aclose()
        await self.store.close()
