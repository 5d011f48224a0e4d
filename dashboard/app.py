"""``Dashboard``: the CI dashboard's routes on an aiohttp application.

    GET  /                                   every repository's health over a window (?days=1|7|14|30)
    GET  /<forge>/<owner>/<repo>             the matrix of a branch (?ref=refs/heads/main&before=<seq>)
    GET  /<forge>/<owner>/<repo>/pull/<n>    a pull request's jobs
    GET  /jobs/<id>                          a job (?attempt=N, ?from=<seq>, ?q=<search>)
    GET  /jobs/<id>/live                     its log and state as server-sent events (live.py)
    GET  /jobs/<id>/artifacts/<name>/<path>  one file of an artifact (?attempt=N), as a download
    POST /jobs/<id>/cancel, /jobs/<id>/retry the buttons (operate role, CSRF-checked)
    GET  /signin, POST /signin, POST /signout
    GET  /static/...                         the one CSS file and the one script

``<forge>`` is ``github``, ``forgejo``, ``local`` or ``-`` (jobs without one).
The application exists before the store does (``solstice serve`` accepts
webhooks while its node starts): pages answer 503 until ``attach``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, cast

from aiohttp import web

from common.artifacts import ArtifactError, safe_relpath
from common.errors import SolsticeError
from common.schedule_row import ScheduleRow
from dashboard import live
from dashboard.actions import ActionRefused, JobActions
from dashboard.ansi import escape as _escape
from dashboard.auth import Auth, safe_next
from dashboard.columns import ColumnSource, ColumnUnavailable, ExternalResult, RefNotes
from dashboard.links import ForgeLinks
from dashboard.logsource import LogError, LogMissing, LogSource
from dashboard.pages import job as job_page
from dashboard.pages import matrix, pull, summary
from dashboard.pages import schedules as schedules_page
from dashboard.pages.layout import Viewer, error_page, page
from dashboard.settings import WINDOWS, DashboardSettings
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.operators import Role, TokenRefused
from orchestrator.operators.tokens import OperatorTokens
from orchestrator.store import JobRecord, Store, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
FORGES = ("github", "forgejo", "local", "-")
_FORGE_PATTERN = "|".join(re.escape(f) for f in FORGES)
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII digits only ("²".isdigit() is True)
MATRIX_ROWS = 25
SUMMARY_FAILURES = 3  # per repository
SUMMARY_FAILING_REPOS = 30  # repositories whose failures the summary lists
COLUMN_TIMEOUT = 2.0  # seconds a column source may take
MAX_QUERY = 200
DEFAULT_REFS = ("refs/heads/main", "refs/heads/master")
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:;"
                                " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class Backing:
    """What the pages read and act through; given once the store is open."""

    store: Store
    logs: LogSource
    actions: JobActions | None = None  # None: no buttons (a read-only dashboard)
    links: ForgeLinks = ForgeLinks()
    driver_of: Callable[[str, str], str] = lambda host, runs_on: ""  # (host, runs_on) -> driver name, "" unknown
    columns: Sequence[ColumnSource] = field(default_factory=tuple)
    artifacts: ArtifactStore | None = None  # this node's artifacts (None: no artifacts section)
    # The workflows' schedules (kept by the forge integration); None: this dashboard cannot see them.
    schedules: Callable[[], Awaitable[Sequence[ScheduleRow]]] | None = None


def _number(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    if not _DIGITS.fullmatch(text):
        raise web.HTTPBadRequest(text=f"{what} must be a number\n")
    return int(text)


class Dashboard:
    """The pages; ``attach`` a ``Backing`` when the store is open. Lifetime: the application's."""

    def __init__(self, settings: DashboardSettings = DashboardSettings(), public_url: str = "") -> None:
        self.settings = settings
        self.backing: Backing | None = None
        self.auth = Auth(settings, lambda: self.backing.store if self.backing else None, public_url)
        self.closing = asyncio.Event()  # set when the server stops: live views end
        self._columns: list[ColumnSource] = []  # added by parts that start apart from the backing (greenness)

    def add_column(self, source: ColumnSource) -> None:
        """Show ``source``'s results on the matrix and pull request pages, beside the backing's columns."""
        self._columns.append(source)

    def attach(self, backing: Backing) -> None:
        self.backing = backing

    def add_routes(self, app: web.Application) -> None:
        """Every dashboard route, the sign-in middleware and the security headers on ``app``."""
        app.middlewares.append(self.auth.middleware())
        app.on_response_prepare.append(_security_headers)
        app.on_shutdown.append(self._shutdown)
        router = app.router
        router.add_get("/", self.summary)
        router.add_get("/signin", self.signin_form)
        router.add_post("/signin", self.signin)
        router.add_post("/signout", self.signout)
        router.add_get("/schedules", self.schedules)
        router.add_get("/jobs/{job_id}", self.job)
        router.add_get("/jobs/{job_id}/live", self.live)
        router.add_get("/jobs/{job_id}/artifacts/{name}/{path:.+}", self.artifact_file)
        router.add_post("/jobs/{job_id}/cancel", self.cancel)
        router.add_post("/jobs/{job_id}/retry", self.retry)
        router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        router.add_get(f"/{{forge:{_FORGE_PATTERN}}}/{{repo:.+}}/pull/{{number:[0-9]{{1,9}}}}", self.pull)
        router.add_get(f"/{{forge:{_FORGE_PATTERN}}}/{{repo:.+}}", self.matrix)

    async def _shutdown(self, app: web.Application) -> None:
        self.closing.set()

    # -- helpers ------------------------------------------------------------------
    def _require(self) -> Backing:
        if self.backing is None:
            raise web.HTTPServiceUnavailable(text="the orchestrator is starting\n")
        return self.backing

    async def viewer(self, request: web.Request) -> Viewer:
        return Viewer(await self.auth.principal(request), self.auth.csrf(request), self.settings.require_signin)

    async def _read(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except StoreError as err:
            log.error("dashboard read failed: %s", err)
            raise web.HTTPServiceUnavailable(text=f"the state store failed: {str(err).splitlines()[0]}\n") from None

    @staticmethod
    def _html(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    async def _not_found(self, request: web.Request, message: str) -> web.Response:
        return self._html(error_page(404, message, await self.viewer(request)), 404)

    async def _external(self, forge: str, repo: str, shas: Sequence[str]) -> tuple[
            dict[str, list[ExternalResult]], list[str]]:
        """Every column source's results for ``shas``, and what could not be had."""
        results: dict[str, list[ExternalResult]] = {}
        problems: list[str] = []
        for source in [*self._require().columns, *self._columns]:
            try:
                found: Mapping[str, Sequence[ExternalResult]] = await asyncio.wait_for(
                    source.results(forge, repo, shas), COLUMN_TIMEOUT)
            except ColumnUnavailable as err:
                problems.append(f"{source.name}: {err}")
                continue
            except TimeoutError:
                problems.append(f"{source.name} did not answer within {COLUMN_TIMEOUT:g}s")
                continue
            for sha, items in found.items():
                results.setdefault(sha, []).extend(items)
        return results, problems

    async def _ref_notes(self, forge: str, repo: str, ref: str) -> tuple[list[str], list[str]]:
        """The lines column sources have to say about ``ref`` (``RefNotes``), and what could not be had."""
        notes: list[str] = []
        problems: list[str] = []
        for source in [*self._require().columns, *self._columns]:
            if not hasattr(source, "ref_notes"):
                continue
            try:
                notes += await asyncio.wait_for(cast(RefNotes, source).ref_notes(forge, repo, ref), COLUMN_TIMEOUT)
            except ColumnUnavailable as err:
                problems.append(f"{source.name}: {err}")
            except TimeoutError:
                problems.append(f"{source.name} did not answer within {COLUMN_TIMEOUT:g}s")
        return notes, problems

    # -- pages --------------------------------------------------------------------
    async def summary(self, request: web.Request) -> web.Response:
        backing = self._require()
        days = _number(request.query.get("days"), "days") or self.settings.window_days
        if days not in WINDOWS:
            raise web.HTTPBadRequest(text=f"days must be one of {', '.join(map(str, WINDOWS))}\n")
        now = datetime.now(UTC)
        since = (int(time.time() // 86400) - days + 1) * 86400.0  # whole UTC days, today included
        summaries = await self._read(backing.store.repo_summaries(since))
        hosts = await self._read(backing.store.list_hosts())
        failing = [s for s in summary.order(summaries) if s.failed or s.errored][:SUMMARY_FAILING_REPOS]
        found = await self._read(asyncio.gather(
            *(backing.store.latest_failures(s.forge, s.repo, since, SUMMARY_FAILURES) for s in failing)))
        failures = {(s.forge, s.repo): jobs for s, jobs in zip(failing, found, strict=True)}
        return self._html(summary.render(summaries, failures, hosts, days, await self.viewer(request), now))

    async def schedules(self, request: web.Request) -> web.Response:
        backing = self._require()
        rows = None
        if backing.schedules is not None:
            try:
                rows = await backing.schedules()
            except SolsticeError as err:
                log.error("dashboard read of the schedules failed: %s", err)
                raise web.HTTPServiceUnavailable(text=f"the schedules cannot be read: {str(err).splitlines()[0]}\n") \
                    from None
        return self._html(schedules_page.render(rows, await self.viewer(request), datetime.now(UTC)))

    async def matrix(self, request: web.Request) -> web.Response:
        backing = self._require()
        forge = "" if request.match_info["forge"] == "-" else request.match_info["forge"]
        repo = request.match_info["repo"]
        before = _number(request.query.get("before"), "before")
        refs = await self._read(backing.store.repo_refs(forge, repo))
        if not refs:
            return await self._not_found(request, f"no jobs of {forge or '-'}/{repo}")
        ref = request.query.get("ref", "")
        if len(ref) > 1024:
            raise web.HTTPBadRequest(text="ref is too long\n")
        if not ref:
            branches = [r.ref for r in refs if not r.pull_request]
            ref = next((r for r in DEFAULT_REFS if r in branches), branches[0] if branches else refs[0].ref)
        commits = await self._read(backing.store.ref_commits(forge, repo, ref, before, MATRIX_ROWS + 1))
        older = commits[MATRIX_ROWS - 1].first_seq if len(commits) > MATRIX_ROWS else None
        commits = commits[:MATRIX_ROWS]
        shas = [c.sha for c in commits]
        cells = await self._read(backing.store.commit_jobs(forge, repo, ref, shas))
        external, problems = await self._external(forge, repo, shas)
        notes, note_problems = await self._ref_notes(forge, repo, ref)
        view = matrix.MatrixView(forge, repo, ref, refs, commits, cells, external, [*problems, *note_problems], older,
                                 before is not None, notes)
        return self._html(matrix.render(view, backing.links, await self.viewer(request), datetime.now(UTC)))

    async def pull(self, request: web.Request) -> web.Response:
        backing = self._require()
        forge = "" if request.match_info["forge"] == "-" else request.match_info["forge"]
        repo, number = request.match_info["repo"], int(request.match_info["number"])
        jobs = await self._read(backing.store.pull_jobs(forge, repo, number))
        if not jobs:
            return await self._not_found(request, f"no jobs of pull request #{number} of {repo}")
        attempts = await self._read(backing.store.attempts_of([j.job_id for j in jobs]))
        external, problems = await self._external(forge, repo, list(dict.fromkeys(j.sha for j in jobs)))
        return self._html(pull.render(forge, repo, number, jobs, attempts, external, problems, backing.links,
                                      await self.viewer(request), datetime.now(UTC)))

    async def _job(self, request: web.Request) -> tuple[Backing, JobRecord]:
        backing = self._require()
        job = await self._read(backing.store.get_job(request.match_info["job_id"]))
        if job is None:
            raise web.HTTPNotFound(text=f"no job {request.match_info['job_id']}\n")
        return backing, job

    async def job_view(self, backing: Backing, job: JobRecord, attempt_no: int, start: int | None = None,
                       query: str = "", with_run: bool = True) -> job_page.JobView:
        """What the job page shows of attempt ``attempt_no``: its log from ``start`` (0: the last lines;
        None: no log) and the run's other jobs when ``with_run`` (live updates need neither)."""
        store = backing.store
        attempts = await self._read(store.attempts(job.job_id))
        attempt = next(a for a in attempts if a.attempt == attempt_no)
        steps = await self._read(store.steps(job.job_id, attempt_no))
        note = await self._read(store.failure_note(job.job_id, attempt_no))
        tests = await self._read(store.test_summary(job.job_id, attempt_no))
        run_jobs = await self._read(store.jobs_of_run(job.run_id)) if job.run_id and with_run else []
        lines, highest, problem = [], 0, ""
        if start is not None or query:
            try:
                found = await backing.logs.read(job.job_id, attempt_no, start or 0, job_page.INLINE_LINES)
                lines, highest = list(found.lines), found.highest
            except LogMissing:
                problem = "" if not attempt.state.terminal else "This attempt logged nothing."
            except LogError as err:
                problem = str(err)
        if query:
            folded = query.casefold()
            lines = [line for line in lines if folded in line.text().casefold()]
        driver = backing.driver_of(attempt.host, job.runs_on) if attempt.host else ""
        artifacts = []
        if backing.artifacts is not None and with_run and attempt.state.terminal:
            try:
                artifacts = await backing.artifacts.list(job.job_id, attempt_no)
            except (ArtifactError, OSError) as err:
                log.error("cannot list artifacts: %s", err)
        return job_page.JobView(job, attempt, attempts, steps, note, run_jobs, driver, lines, highest, problem,
                                start or 0, query, artifacts, tests)

    async def artifact_file(self, request: web.Request) -> web.StreamResponse:
        """One listed file of an artifact, as an attachment (only paths its manifest names)."""
        backing, job = await self._job(request)
        attempt = _number(request.query.get("attempt"), "attempt") or job.attempt
        name, path = request.match_info["name"], request.match_info["path"]
        if backing.artifacts is None:
            raise web.HTTPNotFound(text="artifacts are not kept here\n")
        try:
            info = await backing.artifacts.get(job.job_id, attempt, name)
        except ArtifactError as err:
            raise web.HTTPNotFound(text=f"{err}\n") from None
        if not any(f.path == path for f in info.file_list):
            raise web.HTTPNotFound(text=f"artifact {name} has no file {path}\n")
        filename = path.rsplit("/", 1)[-1].replace('"', "")
        headers = {"Content-Disposition": f'attachment; filename="{filename}"',
                   "Content-Type": "application/octet-stream"}
        try:
            file = backing.artifacts.folder(job.job_id, attempt, name) / "files" / safe_relpath(path)
        except ArtifactError:
            file = None
        if file is not None and file.is_file():
            return web.FileResponse(file, headers=headers)
        # Not on this node (a cluster's dashboard): the archive's chunks of that one file.
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        async for chunk in backing.artifacts.chunks(job.job_id, attempt, name):
            if chunk.path == path:
                await response.write(chunk.data)
        await response.write_eof()
        return response

    async def job(self, request: web.Request) -> web.Response:
        backing, job = await self._job(request)
        asked = _number(request.query.get("attempt"), "attempt")
        attempt = job.attempt if asked is None else asked
        if not 1 <= attempt <= job.attempt:
            raise web.HTTPBadRequest(text=f"attempt must be 1..{job.attempt}\n")
        start = _number(request.query.get("from"), "from") or 0
        query = request.query.get("q", "")[:MAX_QUERY]
        view = await self.job_view(backing, job, attempt, start or (1 if query else 0), query)
        return self._html(job_page.render(view, backing.links, await self.viewer(request), datetime.now(UTC),
                                          request.query.get("done", "")))

    async def live(self, request: web.Request) -> web.StreamResponse:
        backing, job = await self._job(request)
        return await live.stream(self, backing, job, request)

    # -- actions ------------------------------------------------------------------
    async def _act(self, request: web.Request, done: str,
                   act: Callable[[JobActions, str], Awaitable[object]]) -> web.StreamResponse:
        backing, job = await self._job(request)
        form = dict(await request.post())
        self.auth.check_form(request, {k: str(v) for k, v in form.items()})
        principal = await self.auth.principal(request)
        if principal is None or not principal.may(Role.OPERATE):
            raise web.HTTPForbidden(text="cancel and re-run need an operator token with the operate role\n")
        if backing.actions is None:
            raise web.HTTPNotFound(text="this dashboard is read-only\n")
        try:
            await self._read(act(backing.actions, job.job_id))
        except ActionRefused as err:
            viewer = await self.viewer(request)
            body = (f'<h1>Nothing done</h1><p class="notice">{_escape(str(err))}</p>'
                    f'<p><a href="/jobs/{_escape(job.job_id)}">Back to the job</a></p>')
            return self._html(page("Nothing done", body, viewer), 409)
        raise web.HTTPSeeOther(f"/jobs/{job.job_id}?done={done}")

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        principal = await self.auth.principal(request)
        return await self._act(request, "cancelled", lambda actions, job_id: actions.cancel(job_id, principal))  # type: ignore[arg-type]

    async def retry(self, request: web.Request) -> web.StreamResponse:
        principal = await self.auth.principal(request)
        return await self._act(request, "retried", lambda actions, job_id: actions.retry(job_id, principal))  # type: ignore[arg-type]

    # -- sign-in ------------------------------------------------------------------
    async def signin_form(self, request: web.Request, message: str = "", status: int = 200) -> web.Response:
        viewer = await self.viewer(request)
        target = safe_next(request.query.get("next", "/"))
        note = f'<p class="notice" role="alert">{_escape(message)}</p>' if message else ""
        body = f"""<h1>Sign in</h1>{note}
<p>Paste an operator token (<code>solstice token create --name you --role operate</code>).
It is kept in a cookie of this browser that scripts cannot read.</p>
<form method="post" action="/signin" class="signin">
<input type="hidden" name="next" value="{_escape(target)}">
<label for="token">Operator token</label>
<input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in</button></form>"""
        return self._html(page("Sign in", body, viewer), status)

    async def signin(self, request: web.Request) -> web.StreamResponse:
        self.auth.check_origin(request)
        backing = self._require()
        form = await request.post()
        token = str(form.get("token", "")).strip()
        try:
            principal = await self._read(OperatorTokens(backing.store).verify(token))
        except TokenRefused as err:
            return await self.signin_form(request, f"Not signed in: {err}.", 401)
        log.info("dashboard sign-in", extra={"fields": {"operator": principal.name, "role": principal.role.label}})
        response = web.HTTPSeeOther(safe_next(str(form.get("next", "/"))))
        self.auth.sign_in(request, response, token)
        raise response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self.auth.check_form(request, {k: str(v) for k, v in form.items()})
        response = web.HTTPSeeOther("/")
        self.auth.sign_out(response)
        raise response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.content_type in ("text/html", "text/event-stream"):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
