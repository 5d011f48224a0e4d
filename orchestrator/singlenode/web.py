"""The single node's HTTP side: webhooks, ``/healthz`` and a plain page and raw log per job.

    GET  /healthz          200 {"status": "ok"} once every part is ready; 503 before and while stopping
    POST /webhooks/github  GitHub deliveries      (integration.webhooks)
    POST /webhooks/forgejo Forgejo deliveries
    GET  /jobs/<id>        the job as plain HTML (the URL forge statuses link to)
    GET  /jobs/<id>/log    the current attempt's log as text/plain (?attempt=N for another), streamed;
                           Solstice's own lines (checkout, step banners) start with "## ";
                           ?tail=N and Range requests (orchestrator.logstore.httplog)

The application exists before the node does (webhooks are accepted while the
node starts; the queue keeps them), so ``JobPages`` answers 503 until
``attach`` gives it the store and log store.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from common.rpc import jobs_pb2
from integration.httpserver import harden
from integration.runtime import Integration
from orchestrator.logstore import LogStore
from orchestrator.logstore.httplog import serve_log
from orchestrator.logstore.reader import LogReader
from orchestrator.store import JobRecord, StepRecord, Store, StoreError

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
        """``/healthz``, ``/jobs/<id>`` and ``/jobs/<id>/log`` on ``app``."""
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/jobs/{job_id}", self.job_page)
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

    async def job_page(self, request: web.Request) -> web.Response:
        backing, job = await self._job(request)
        try:
            steps = await backing.store.steps(job.job_id, job.attempt)
        except StoreError as err:
            raise web.HTTPServiceUnavailable(text=f"the state store failed: {err}\n") from None
        return web.Response(text=render_job(job, steps, backing), content_type="text/html")

    async def job_log(self, request: web.Request) -> web.StreamResponse:
        backing, job = await self._job(request)
        attempt_text = request.query.get("attempt", str(job.attempt))
        if not _ATTEMPT.fullmatch(attempt_text) or not 1 <= int(attempt_text) <= job.attempt:
            raise web.HTTPBadRequest(text=f"attempt must be 1..{job.attempt}\n")
        reader = backing.reader or LogReader(backing.store, backing.logstore, backing.host)
        return await serve_log(request, reader, job.job_id, int(attempt_text))


def source_text(request: jobs_pb2.JobRequest) -> str:
    """Who made the job: a forge webhook, or an operator through AdminService (not reported to a forge)."""
    if request.source == jobs_pb2.JOB_SOURCE_ADMIN:
        return f"submitted by operator {request.submitted_by or '?'} through AdminService (not reported to a forge)"
    if request.source == jobs_pb2.JOB_SOURCE_FORGE:
        return f"forge webhook ({request.origin or request.checkout.forge})"
    return ""


def render_job(job: JobRecord, steps: Sequence[StepRecord], backing: Backing) -> str:
    """The job page: what ran where, how it ended, each step, a link to the log."""
    e = html.escape
    checkout = job.request.checkout
    rows = [
        ("state", job.state.name.lower()), ("attempt", str(job.attempt)), ("runs on", job.runs_on),
        ("host", job.host or "(not claimed yet)"),
        ("driver", f"{backing.routes.get(job.runs_on, backing.driver)} (serves {backing.labels_note})"
         if job.host == backing.host else ""),
        ("repository", job.repo), ("ref", job.ref), ("commit", job.sha or checkout.sha),
        ("run", job.run_id), ("source", source_text(job.request)), ("reason", job.reason),
        ("created", job.created_at.isoformat(timespec="seconds")),
        ("updated", job.updated_at.isoformat(timespec="seconds")),
    ]
    facts = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows if v)
    step_rows = "\n".join(
        f"<tr><td>{s.index + 1}</td><td>{e(s.name)}</td><td>{e(s.state.name.lower())}</td>"
        f"<td>{s.exit_code}</td><td>{s.duration:.1f}s</td></tr>"
        for s in steps
    ) or '<tr><td colspan="5">no step has reported yet</td></tr>'
    title = e(f"{job.name or job.key} - {job.state.name.lower()}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>Job {e(job.name or job.key)} <small>{e(job.job_id)}</small></h1>
<table>
{facts}
</table>
<h2>Steps</h2>
<table>
<tr><th>#</th><th>name</th><th>state</th><th>exit</th><th>duration</th></tr>
{step_rows}
</table>
<p><a href="/jobs/{e(job.job_id)}/log">raw log</a></p>
</body></html>
"""


def make_app(integration: Integration, pages: JobPages) -> web.Application:
    """The single node's aiohttp application (webhooks from the integration, pages from ``pages``)."""
    app = web.Application(client_max_size=integration.settings.webhooks.max_body_bytes + 1)
    harden(app, integration.settings.http)
    integration.add_routes(app)
    pages.add_routes(app)
    return app
