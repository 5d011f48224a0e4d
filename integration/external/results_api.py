"""``POST /api/v1/results``: a downstream's report, verified, bound to its dispatch, stored.

Order of checks, cheapest and least trusting first: the size from
``Content-Length`` (413 before anything is read); the OIDC token (401); the
token's repository on the allowlist at L2 or above (403); its token bucket
(429 with ``Retry-After``); the body, streamed under the cap (413 as soon as
it passes it); the schema (400/422 naming every problem); the run the token
was minted in; the dispatch the report names - it must have been sent to
this very repository, for this upstream commit (403/422); the level for that
upstream, at this moment (403: a repository removed or demoted is refused
at once; a re-run, a new ``run_attempt``, needs L3); the state machine and
the quota (409/429). Then the result is stored, and an L4 result is queued
to be shown upstream.

Every answer says plainly what happened, in ``result``: ``accepted``;
``rejected`` (4xx: fix the request - ``detail`` says what is wrong);
``unavailable`` (5xx: nothing was stored, this is not the caller's fault and
must not fail its CI; ``Retry-After`` says when to try again).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from integration.errors import IntegrationError
from integration.events import Forge
from integration.external.allowlist import RepoKey
from integration.external.allowlist_source import AllowlistSource
from integration.external.levels import Level
from integration.external.oidc import KeysUnavailable, TokenInvalid, TokenVerifier, VerifiedCaller
from integration.external.records import PENDING, DispatchRecord, ResultReport, Trusted
from integration.external.report_schema import ReportInvalid, parse_report
from integration.external.settings import ExternalSettings
from integration.external.sink import QuotaExceeded, ResultConflict, ResultSink, SinkUnavailable
from integration.external.states import Move
from integration.external.store import ExternalStore
from integration.external.upstream_checks import UpstreamChecks
from integration.webhooks import read_capped

log = logging.getLogger(__name__)

RESULTS_PATH = "/api/v1/results"
RETRY_AFTER = 30  # seconds, when the store or the dashboard is down
QUOTA_RETRY_AFTER = 3600
# The repositories OIDC tokens of the issuer speak of (GitHub Actions: GitHub repositories).
TOKEN_FORGE = Forge.GITHUB


class Refused(Exception):
    """One answer of the results API (internal: carries the HTTP status and what to say)."""

    def __init__(self, status: int, reason: str, detail: str, retry_after: int = 0, problems: list[str] | None = None):
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.problems = problems or []


def _answer(status: int, doc: dict[str, Any], retry_after: int = 0) -> web.Response:
    response = web.json_response(doc, status=status)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if status == 413:
        response.force_close()  # do not drain the rest of an oversize body
    return response


def refused_answer(refused: Refused) -> web.Response:
    if refused.status >= 500:
        doc: dict[str, Any] = {
            "result": "unavailable", "reason": refused.reason,
            "detail": f"{refused.detail}. Nothing was stored. This is not your fault and must not fail your CI: "
                      f"retry after {refused.retry_after} seconds.",
            "retry_after": refused.retry_after,
        }
    else:
        doc = {"result": "rejected", "reason": refused.reason, "detail": refused.detail}
        if refused.problems:
            doc["problems"] = refused.problems
        if refused.retry_after:
            doc["retry_after"] = refused.retry_after
    return _answer(refused.status, doc, refused.retry_after)


class ResultsApi:
    """The handler of ``POST /api/v1/results`` (one per server; used concurrently)."""

    def __init__(self, settings: ExternalSettings, verifier: TokenVerifier, allowlist: AllowlistSource,
                 store: ExternalStore, sink: ResultSink, upstream_checks: UpstreamChecks,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.verifier = verifier
        self.allowlist = allowlist
        self.store = store
        self.sink = sink
        self.upstream_checks = upstream_checks
        self._clock = clock
        self.accepted = 0
        self.rejected = 0

    async def handle(self, request: web.Request) -> web.Response:
        fields: dict[str, object] = {"remote": request.remote or ""}
        try:
            doc = await self._handle(request, fields)
        except Refused as refused:
            self.rejected += refused.status < 500
            level = logging.ERROR if refused.status >= 500 else logging.INFO
            log.log(level, "result refused: %s", refused.detail,
                    extra={"fields": {**fields, "status": refused.status, "reason": refused.reason}})
            return refused_answer(refused)
        self.accepted += 1
        log.info("result accepted", extra={"fields": {**fields, "state": doc["state"], "move": doc["move"]}})
        return _answer(201 if doc["move"] == Move.CREATE.value else 200, doc)

    async def _handle(self, request: web.Request, fields: dict[str, object]) -> dict[str, Any]:
        cap = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            raise Refused(413, "too large", f"a report is limited to {cap} bytes")
        caller = await self._verify(request)
        repo = RepoKey(TOKEN_FORGE, caller.repository)
        fields["repository"] = caller.repository
        best = self.allowlist.current.best_level(repo)
        if best is None:
            raise Refused(403, "not allowlisted", f"{caller.repository} is not on the allowlist: its results are "
                                                  "not taken")
        if not best.takes_results:
            raise Refused(403, "level too low", f"{caller.repository} is at {best.name}: it receives dispatches, "
                                                f"but results are taken from {Level.L2.name} and above")
        await self._take_token(caller.repository)
        body = await read_capped(request, cap)
        if body is None:
            raise Refused(413, "too large", f"a report is limited to {cap} bytes")
        try:
            report = parse_report(body)
        except ReportInvalid as err:
            raise Refused(400 if err.malformed else 422, "invalid report", str(err), problems=err.problems) from None
        fields.update(delivery=report.delivery_id, job=report.job_id, run=report.run_id, attempt=report.run_attempt)
        self._check_run(caller, report)
        dispatch = await self._dispatch(repo, report)
        level = self.allowlist.current.level(dispatch.upstream, repo)
        if level is None or not level.takes_results:
            now_at = f"is at {level.name}" if level else "is no longer on the allowlist"
            raise Refused(403, "level too low", f"{caller.repository} {now_at} for {dispatch.upstream.name}: "
                                                "its results are not taken")
        if report.run_attempt > 1 and not level.takes_reruns:
            raise Refused(403, "level too low", f"re-runs (run_attempt {report.run_attempt}) are taken from "
                                                f"{Level.L3.name} repositories; {caller.repository} is at {level.name}")
        trusted = Trusted(repo, level, dispatch.id, dispatch.upstream, dispatch.sha, dispatch.pr_number,
                          dispatch.installation_id, dispatch.created_at, dispatch.sent_at or None)
        try:
            if dispatch.state == PENDING:
                # The report proves the dispatch arrived (a try that timed out after GitHub took it).
                await self.store.dispatch_sent(dispatch.id, self._clock())
            recorded = await self.sink.record(trusted, report)
            if level.posts_upstream and recorded.move is not Move.UNCHANGED:
                await self.upstream_checks.show(trusted, report)
        except ResultConflict as err:
            raise Refused(409, "conflict", str(err)) from None
        except QuotaExceeded as err:
            raise Refused(429, "quota", str(err), QUOTA_RETRY_AFTER) from None
        except (SinkUnavailable, IntegrationError) as err:
            raise Refused(503, "store unavailable", f"the result could not be stored ({err})", RETRY_AFTER) from None
        detail = {Move.CREATE: "stored", Move.COMPLETE: "stored: the job is completed",
                  Move.UNCHANGED: "already in progress: nothing changed"}[recorded.move]
        return {"result": "accepted", "detail": detail, "move": recorded.move.value, "state": recorded.status,
                "repository": caller.repository, "level": level.name, "upstream": dispatch.upstream.name,
                "sha": dispatch.sha}

    async def _verify(self, request: web.Request) -> VerifiedCaller:
        try:
            return await self.verifier.verify(request.headers.get("Authorization"))
        except TokenInvalid as err:
            raise Refused(401, "bad token", str(err)) from None
        except KeysUnavailable as err:
            raise Refused(503, "issuer keys unavailable", str(err), RETRY_AFTER) from None

    async def _take_token(self, repository: str) -> None:
        try:
            wait = await self.store.take_token(repository, self._clock(), self.settings.rate_per_minute / 60.0,
                                               self.settings.rate_burst)
        except IntegrationError as err:
            raise Refused(503, "store unavailable", f"the rate limit could not be checked ({err})",
                          RETRY_AFTER) from None
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise Refused(429, "rate limited", f"{repository} sends more than {self.settings.rate_per_minute:g} "
                                               f"reports a minute: retry after {seconds} seconds", seconds)

    @staticmethod
    def _check_run(caller: VerifiedCaller, report: ResultReport) -> None:
        # The run the token was minted in is the issuer's word: a report speaks for that run only.
        if caller.run_id and caller.run_id != report.run_id:
            raise Refused(422, "wrong run", f"run_id: {report.run_id!r} is not the run the token was minted in "
                                            f"({caller.run_id})")
        if caller.run_attempt and caller.run_attempt != report.run_attempt:
            raise Refused(422, "wrong run", f"run_attempt: {report.run_attempt} is not the attempt the token was "
                                            f"minted in ({caller.run_attempt})")

    async def _dispatch(self, repo: RepoKey, report: ResultReport) -> DispatchRecord:
        try:
            dispatch = await self.store.find_dispatch(report.delivery_id, repo)
        except IntegrationError as err:
            raise Refused(503, "store unavailable", f"the dispatch could not be read ({err})", RETRY_AFTER) from None
        if dispatch is None:
            raise Refused(403, "not dispatched", f"delivery {report.delivery_id!r} was never dispatched to "
                                                 f"{repo.name} (or its record expired): results are taken only "
                                                 "for changes a repository was asked to test")
        if report.upstream_repo != dispatch.upstream.name:
            raise Refused(422, "wrong upstream", f"upstream.repo: {report.upstream_repo!r} is not the dispatched "
                                                 f"repository {dispatch.upstream.name!r}")
        if report.upstream_sha != dispatch.sha:
            raise Refused(422, "wrong upstream", f"upstream.sha: {report.upstream_sha} is not the dispatched commit "
                                                 f"{dispatch.sha}")
        if (report.upstream_pr or 0) != dispatch.pr_number and report.upstream_pr is not None:
            raise Refused(422, "wrong upstream", f"upstream.pr_number: {report.upstream_pr} is not the dispatched "
                                                 f"pull request ({dispatch.pr_number or 'none: it was a push'})")
        return dispatch
