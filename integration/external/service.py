"""``ExternalCI``: out-of-tree CI wired from the integration's settings, with its tasks and routes.

Lifetime (owned by ``integration.runtime.Integration``): ``start()`` opens
the store, reads the allowlist and starts the long-running tasks - the
allowlist refresher, the dispatch sender, the upstream-check poster and the
hourly purge - each restarted after a logged crash; ``close()`` cancels
and awaits them and closes the store.

Routes (``add_routes``):

    POST /api/v1/results          downstream reports (OIDC)             when an allowlist is set
    POST /api/v1/results/ingest   results relayed to this dashboard      when external.ingest_token is set
    GET  /api/v1/results          ?upstream=github:o/r&sha=... | &pull=N: per downstream, latest states
    GET  /api/v1/downstreams      ?days=7: pass rate, last result, health; the allowlist's status
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from common.lifecycle import StartClose
from common.log import masker
from common.validation import RequestInvalid, check_sha
from integration.errors import IntegrationError
from integration.events import Forge
from integration.external.allowlist import RepoKey
from integration.external.allowlist_source import AllowlistSource
from integration.external.oidc import JwksCache, TokenVerifier
from integration.external.read import ExternalResults
from integration.external.relay import UpstreamRelay
from integration.external.results_api import RESULTS_PATH, ResultsApi
from integration.external.senders import DispatchSender, GitHubDispatcher, WebhookDispatcher
from integration.external.sink import INGEST_PATH, LocalSink, RemoteSink, ResultSink, ingest_handler
from integration.external.store import ExternalStore, open_external_store
from integration.external.upstream_checks import UpstreamChecks
from integration.forges.forgejo_api import ForgejoClient
from integration.forges.github_api import GitHubClient
from integration.forges.http import ForgeHttp, RetryPolicy
from integration.settings import IntegrationSettings

log = logging.getLogger(__name__)

PURGE_INTERVAL = 3600.0
CRASH_PAUSE = 5.0
MAX_WINDOW_DAYS = 90


def _json(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


class ExternalCI(StartClose):
    """The relay, the results API and the read side of out-of-tree CI for one integration."""

    def __init__(
        self,
        settings: IntegrationSettings,
        session: aiohttp.ClientSession,
        github: GitHubClient | None = None,
        forgejo: ForgejoClient | None = None,
        store: ExternalStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.external = settings.external
        self.session = session
        self.github = github
        self.forgejo = forgejo
        self.store = store or open_external_store(settings.store)
        self._clock = clock
        self.allowlist: AllowlistSource | None = None
        self.relay: UpstreamRelay | None = None
        self.results_api: ResultsApi | None = None
        self.upstream_checks: UpstreamChecks | None = None
        self.read = ExternalResults(self.store, None, clock)
        self._ingest: Callable[[web.Request], Awaitable[web.Response]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.local_sinks: list[LocalSink] = []  # where completed results are stored here (greenness follows them)

    async def start(self) -> None:
        await self.store.open()
        try:
            self._wire()
            if self.allowlist is not None:
                await self.allowlist.start()
        except BaseException:
            await self.close()
            raise
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [("purge", self._purge_forever)]
        if self.allowlist is not None:
            loops.append(("allowlist refresh", self.allowlist.run))
        if self.relay is not None:
            loops.append(("dispatch sender", self.relay.run))
        if self.upstream_checks is not None:
            loops.append(("upstream checks", self.upstream_checks.run))
        self._tasks = [asyncio.create_task(self._supervised(name, loop), name=f"external CI: {name}")
                       for name, loop in loops]

    def _wire(self) -> None:
        x = self.external
        r = self.settings.report
        masker.add(*(v for v in (x.webhook_secret, x.ingest_token) if v))
        # Short: the relay and the poster retry on their own schedule, and a results request waits on the JWKS.
        policy = RetryPolicy(2, r.backoff_initial, r.backoff_max, r.request_timeout)
        if x.relays:
            self.allowlist = AllowlistSource(x.allowlist, self.store, ForgeHttp(self.session, "allowlist", policy),
                                             x.allow_http, x.allowlist_refresh, self._clock)
            senders: dict[Forge, DispatchSender] = {
                Forge.FORGEJO: WebhookDispatcher(ForgeHttp(self.session, "Forgejo downstream", policy),
                                                 x.webhook_secret, x.event_type)}
            if self.github is not None:
                senders[Forge.GITHUB] = GitHubDispatcher(ForgeHttp(self.session, "GitHub", policy), self.github.auth)
            public = self.settings.public_url.rstrip("/")
            self.relay = UpstreamRelay(x, self.allowlist, self.store, senders, public + RESULTS_PATH, self._clock)
            keys = JwksCache(ForgeHttp(self.session, "OIDC issuer", policy), x.jwks_url(), x.jwks_max_age,
                             x.jwks_refresh_min_interval)
            verifier = TokenVerifier(keys, x.oidc_issuer, x.oidc_audience or public, x.oidc_leeway)
            sink: ResultSink
            if x.results_forward_url:
                sink = RemoteSink(ForgeHttp(self.session, "dashboard", policy), x.results_forward_url, x.ingest_token)
            else:
                sink = LocalSink(self.store, x.quota_per_repository, x.results_retention, self._clock)
                self.local_sinks.append(sink)
            self.upstream_checks = UpstreamChecks(self.store, self.github, self.forgejo, x.results_retention,
                                                  self._clock)
            self.results_api = ResultsApi(x, verifier, self.allowlist, self.store, sink, self.upstream_checks,
                                          self._clock)
            self.read = ExternalResults(self.store, self.allowlist, self._clock)
        if x.ingests:
            ingested = LocalSink(self.store, x.quota_per_repository, x.results_retention, self._clock)
            self.local_sinks.append(ingested)
            self._ingest = ingest_handler(ingested, x.ingest_token, x.max_body_bytes)

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the out-of-tree CI %s task crashed; restarting it", name)
            await asyncio.sleep(CRASH_PAUSE)

    async def _purge_forever(self) -> None:
        while True:
            try:
                purged = await self.store.purge(self._clock())
                if purged:
                    log.info("expired out-of-tree CI records purged", extra={"fields": {"count": purged}})
            except IntegrationError as err:
                log.error("purging out-of-tree CI records failed: %s", err)
            await asyncio.sleep(PURGE_INTERVAL)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.close()

    # -- routes -----------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Mount the results API, the ingest path (dashboard apart) and the read endpoints on ``app``."""
        if self.results_api is not None:
            app.router.add_post(RESULTS_PATH, self.results_api.handle)
        if self._ingest is not None:
            app.router.add_post(INGEST_PATH, self._ingest)
        app.router.add_get(RESULTS_PATH, self._get_results)
        app.router.add_get("/api/v1/downstreams", self._get_downstreams)

    async def _get_results(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            upstream = RepoKey.parse(query.get("upstream", ""), "upstream")
            if "sha" in query:
                views = await self.read.for_commit(upstream, check_sha(query["sha"], "sha"))
            elif query.get("pull", "").isdigit():
                views = await self.read.for_pull_request(upstream, int(query["pull"]))
            else:
                raise RequestInvalid("sha", "give sha=<commit> or pull=<number>")
        except RequestInvalid as err:
            return web.json_response({"result": "rejected", "detail": str(err)}, status=400)
        except IntegrationError as err:
            return web.json_response({"result": "unavailable", "detail": str(err)}, status=503,
                                     headers={"Retry-After": "30"})
        return web.json_response({"upstream": str(upstream), "downstreams": [_json(v) for v in views]})

    async def _get_downstreams(self, request: web.Request) -> web.Response:
        days = request.query.get("days", "7")
        if not days.isdigit() or not 1 <= int(days) <= MAX_WINDOW_DAYS:
            return web.json_response({"result": "rejected", "detail": f"days must be 1 to {MAX_WINDOW_DAYS}"},
                                     status=400)
        try:
            summaries = await self.read.downstreams(int(days) * 24 * 3600.0)
        except IntegrationError as err:
            return web.json_response({"result": "unavailable", "detail": str(err)}, status=503,
                                     headers={"Retry-After": "30"})
        allowlist = _json(self.allowlist.status) if self.allowlist is not None else None
        return web.json_response({"allowlist": allowlist, "downstreams": [_json(s) for s in summaries]})
