"""The single node's HTTP side: webhooks, ``/healthz``, the raw log per job, the dashboard and ``/metrics``.

    GET  /healthz          200 {"status": "ok"} once every part is ready; 503 before and while stopping
    POST /webhooks/github  GitHub deliveries      (integration.webhooks)
    POST /webhooks/forgejo Forgejo deliveries
    GET  /jobs/<id>/log    the current attempt's log as text/plain (?attempt=N for another), streamed;
                           Solstice's own lines (checkout, step banners) start with "## ";
                           ?tail=N and Range requests (orchestrator.logstore.httplog)
    GET  /metrics          Prometheus metrics (common.metrics)
    everything else        the dashboard (dashboard.app): /, /jobs/<id> (the URL forge statuses
                           link to), the matrices and pull requests, sign-in

The application exists before the node does (webhooks are accepted while the
node starts; the queue keeps them), so ``JobPages`` answers 503 until
``attach`` gives it the store and log store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from common.metrics.http import MetricsEndpoint
from dashboard.app import Dashboard
from integration.httpserver import harden
from integration.runtime import Integration
from orchestrator.logstore import LogStore
from orchestrator.logstore.httplog import serve_log
from orchestrator.logstore.reader import LogReader
from orchestrator.store import JobRecord, Store, StoreError

log = logging.getLogger(__name__)

_ATTEMPT = re.compile(r"[0-9]{1,9}")  # ASCII digits only: "²".isdigit() is True, int("²") fails


@dataclass(frozen=True)
class Backing:
    """What the job pages read; set once the node is up."""

    store: Store
    logstore: LogStore
    host: str
    driver: str  # the default driver
    labels_note: str  # "every runs_on label" or the list
    routes: Mapping[str, str] = field(default_factory=dict)  # label -> its driver, when not the default
    reader: LogReader | None = None  # any attempt's log (the node's); None: read logstore's files


class JobPages:
    """Request handlers for ``/healthz`` and ``/jobs``; ``ready`` drives ``/healthz``."""

    def __init__(self) -> None:
        self.backing: Backing | None = None
        self.ready = False

    def attach(self, backing: Backing) -> None:
        self.backing = backing

    def add_routes(self, app: web.Application) -> None:
        """``/healthz`` and ``/jobs/<id>/log`` on ``app`` (the job page itself is the dashboard's)."""
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/jobs/{job_id}/log", self.job_log)

    async def healthz(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting" if self.backing is None else "stopping"}, status=503)

    def _require(self) -> Backing:
        if self.backing is None:
            raise web.HTTPServiceUnavailable(text="the orchestrator is starting\n")
        return self.backing

    async def _job(self, request: web.Request) -> tuple[Backing, JobRecord]:
        backing = self._require()
        job_id = request.match_info["job_id"]
        try:
            job = await backing.store.get_job(job_id)
        except StoreError as err:
            raise web.HTTPServiceUnavailable(text=f"the state store failed: {err}\n") from None
        if job is None:
            raise web.HTTPNotFound(text=f"no job {job_id}\n")
        return backing, job

    async def job_log(self, request: web.Request) -> web.StreamResponse:
        backing, job = await self._job(request)
        attempt_text = request.query.get("attempt", str(job.attempt))
        if not _ATTEMPT.fullmatch(attempt_text) or not 1 <= int(attempt_text) <= job.attempt:
            raise web.HTTPBadRequest(text=f"attempt must be 1..{job.attempt}\n")
        reader = backing.reader or LogReader(backing.store, backing.logstore, backing.host)
        return await serve_log(request, reader, job.job_id, int(attempt_text))


def make_app(integration: Integration, pages: JobPages, dashboard: Dashboard,
             metrics: MetricsEndpoint) -> web.Application:
    """The single node's aiohttp application: webhooks from the integration, ``/healthz`` and the raw
    logs from ``pages``, ``/metrics``, then the dashboard (its routes match what is left)."""
    app = web.Application(client_max_size=integration.settings.webhooks.max_body_bytes + 1)
    harden(app, integration.settings.http)
    integration.add_routes(app)
    pages.add_routes(app)
    metrics.add_routes(app)
    dashboard.add_routes(app)
    return app
