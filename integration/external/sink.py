"""Where accepted results go: this server's store, or the dashboard's when it is served apart.

``LocalSink`` applies the state machine (``states``) with conditional
writes, so two nodes taking reports of one job at once never both win, and
keeps the per-repository quota. ``RemoteSink`` posts ``{"trusted": ...,
"untrusted": ...}`` to the dashboard's ``/api/v1/results/ingest`` with the
header token scoped to that path alone; the dashboard runs the same
``LocalSink`` (``ingest_handler``) and its answer comes back as the same
outcome. Validation stays in the relay.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from integration.errors import ForgeRejected, ForgeUnavailable, IntegrationError
from integration.external.records import COMPLETED, ResultKey, ResultRecord, ResultReport, Trusted
from integration.external.report_schema import ReportInvalid, check_report
from integration.external.states import Move, conflict_message, decide
from integration.external.store import ExternalStore
from integration.forges.github_app import USER_AGENT
from integration.forges.http import ForgeHttp
from integration.webhooks import read_capped

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/results/ingest"
TOKEN_HEADER = "X-Solstice-Results-Token"


class ResultConflict(IntegrationError):
    """The report does not fit the stored state (409); nothing was changed."""


class QuotaExceeded(IntegrationError):
    """The repository holds as many results as it may (429 until old ones expire)."""


class SinkUnavailable(IntegrationError):
    """The results could not be stored (503: not the caller's fault)."""


@dataclass(frozen=True, slots=True)
class Recorded:
    move: Move  # CREATE, COMPLETE or UNCHANGED
    status: str  # the stored status after the report


class ResultSink(Protocol):
    async def record(self, trusted: Trusted, report: ResultReport) -> Recorded:
        """Store one report; ``ResultConflict``, ``QuotaExceeded`` or ``SinkUnavailable`` when not."""


def result_key(trusted: Trusted, report: ResultReport) -> ResultKey:
    return ResultKey(trusted.downstream, report.delivery_id, report.run_id, report.run_attempt, report.job_id)


class LocalSink:
    """Results in this server's ``ExternalStore``."""

    def __init__(self, store: ExternalStore, quota: int, retention: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.quota = quota
        self.retention = retention
        self._clock = clock
        # Told of each result stored completed (greenness counts required ones); never fails the report.
        self.completed: Callable[[ResultRecord], Awaitable[None]] | None = None

    async def record(self, trusted: Trusted, report: ResultReport) -> Recorded:
        key = result_key(trusted, report)
        # Twice at most: a write that lost a race is decided again on what won.
        for _ in range(2):
            existing = await self.store.get_result(key)
            move = decide(existing, report.status)
            now = self._clock()
            if move is Move.CONFLICT:
                assert existing is not None
                raise ResultConflict(conflict_message(existing, report.status))
            if move is Move.UNCHANGED:
                return Recorded(move, existing.status if existing else report.status)
            if move is Move.CREATE:
                if await self.store.count_results(trusted.downstream) >= self.quota:
                    raise QuotaExceeded(f"{trusted.downstream.name} holds {self.quota} results, its quota: "
                                        "new ones are taken as old ones expire")
                done = report.status == COMPLETED
                record = ResultRecord(key, trusted, report.status, report.conclusion, now, now if done else None,
                                      now, report)
                if await self.store.insert_result(record, now + self.retention):
                    if done:
                        await self._completed(record)
                    return Recorded(move, report.status)
            else:
                assert existing is not None
                record = ResultRecord(key, trusted, COMPLETED, report.conclusion, existing.first_seen_at, now, now,
                                      report.merged_over(existing.report))
                if await self.store.complete_result(record):
                    await self._completed(record)
                    return Recorded(move, COMPLETED)
        raise SinkUnavailable(f"the result {key} kept changing while it was stored")


    async def _completed(self, record: ResultRecord) -> None:
        if self.completed is None:
            return
        try:
            await self.completed(record)
        except Exception:  # noqa: BLE001 - the result is stored; what follows it must not fail the report
            log.exception("a completed result could not be passed on", extra={"fields": {"sha": record.trusted.sha}})


class RemoteSink:
    """Results posted to the dashboard served apart, with the results write path's header token."""

    def __init__(self, http: ForgeHttp, base_url: str, token: str) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + INGEST_PATH
        self._headers = {TOKEN_HEADER: token, "User-Agent": USER_AGENT, "Accept": "application/json"}

    async def record(self, trusted: Trusted, report: ResultReport) -> Recorded:
        body = {"trusted": trusted.to_json(), "untrusted": report.to_json()}
        try:
            answer = await self.http.request("POST", self.url, what="store a result on the dashboard",
                                             headers=self._headers, body=body, allow=(409, 429))
        except ForgeRejected as err:
            raise SinkUnavailable(f"the dashboard refused the result: {err.forge_message}") from err
        except ForgeUnavailable as err:
            raise SinkUnavailable(str(err)) from err
        doc = answer.body if isinstance(answer.body, dict) else {}
        detail = str(doc.get("detail") or answer.text[:300])
        if answer.status == 409:
            raise ResultConflict(detail)
        if answer.status == 429:
            raise QuotaExceeded(detail)
        try:
            return Recorded(Move(doc["move"]), str(doc["state"]))
        except (KeyError, ValueError) as err:
            raise SinkUnavailable(f"the dashboard's answer did not say what it stored: {detail}") from err


def _answer(status: int, **doc: Any) -> web.Response:
    return web.json_response(doc, status=status)


def ingest_handler(sink: LocalSink, token: str, max_body: int) -> Callable[[web.Request], Any]:
    """The dashboard's ``POST /api/v1/results/ingest``: the relay's token, then the relay's validated result."""

    async def ingest(request: web.Request) -> web.Response:
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), token.encode()):
            return _answer(401, result="rejected", detail=f"missing or wrong {TOKEN_HEADER}")
        if request.content_length is not None and request.content_length > 2 * max_body:
            return _answer(413, result="rejected", detail="the body is too large")
        body = await read_capped(request, 2 * max_body)
        if body is None:
            return _answer(413, result="rejected", detail="the body is too large")
        try:
            doc = json.loads(body)
            trusted = Trusted.from_json(doc["trusted"])
            report = check_report(doc["untrusted"])
        except ReportInvalid as err:
            return _answer(400, result="rejected", detail=str(err))
        except (ValueError, KeyError, TypeError) as err:
            return _answer(400, result="rejected", detail=f"not a relayed result: {err!r}")
        try:
            recorded = await sink.record(trusted, report)
        except ResultConflict as err:
            return _answer(409, result="rejected", detail=str(err))
        except QuotaExceeded as err:
            return _answer(429, result="rejected", detail=str(err))
        except (SinkUnavailable, IntegrationError) as err:
            log.error("a relayed result was not stored: %s", err)
            return _answer(503, result="unavailable", detail=str(err))
        return _answer(200, result="accepted", move=recorded.move.value, state=recorded.status)

    return ingest
