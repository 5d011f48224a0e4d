"""L4: a downstream's result shown on the upstream commit (GitHub check run, Forgejo commit status).

``show()`` records what a result key should show (never less than before:
in progress, then completed) and wakes the poster; ``run()`` (owned by
``ExternalCI``) posts what is due, one leased row at a time, so several
nodes never create the same check twice, and retries with a doubling pause
while the forge is down. The results API's answer never waits for the
forge. The check's name is ``external / <downstream> / <job name>``, stable
across runs, so branch protection can require it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from integration.errors import ForgeAuthError, ForgeRejected, ForgeUnavailable, IntegrationError, UnsafeForgeUrl
from integration.events import Forge, Repo
from integration.external.records import COMPLETED, ResultReport, Trusted, UpstreamCheck, dumps
from integration.external.sink import result_key
from integration.external.store import ExternalStore
from integration.forges.forgejo_api import CommitStatus, ForgejoClient
from integration.forges.github_api import CheckRun, CheckRunOutput, GitHubClient

log = logging.getLogger(__name__)

LEASE = 120.0
BACKOFF = 5.0
BACKOFF_MAX = 600.0
GIVE_UP_ATTEMPTS = 12
IDLE_POLL = 5.0
NEVER = 1e18  # next_at of a check given up on (kept for the record, never due)
_FORGEJO_STATES = {"success": "success", "failure": "failure", "timed_out": "failure", "cancelled": "error",
                   "skipped": "success", "neutral": "success"}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_name(trusted: Trusted, report: ResultReport) -> str:
    return f"external / {trusted.downstream.name} / {report.job_name}"[:200]


def _summary(trusted: Trusted, report: ResultReport) -> str:
    lines = [f"Reported by **{trusted.downstream.name}** (out-of-tree CI, level {trusted.level.name}) "
             f"for run {report.run_id}, attempt {report.run_attempt}, job `{report.job_id}`."]
    if report.tests is not None:
        t = report.tests
        lines.append(f"\nTests: {t.passed} passed, {t.failed} failed, {t.skipped} skipped, {t.errors} errors.")
    if report.artifact_url:
        lines.append(f"\nArtifacts and logs (kept by {trusted.downstream.name}): {report.artifact_url}")
    return "\n".join(lines)


class UpstreamChecks:
    """Posts L4 results on the upstream's forge (``github`` / ``forgejo`` clients, None when not configured)."""

    def __init__(self, store: ExternalStore, github: GitHubClient | None, forgejo: ForgejoClient | None,
                 retention: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.github = github
        self.forgejo = forgejo
        self.retention = retention
        self._clock = clock
        self._wake = asyncio.Event()
        self.posted = 0

    async def show(self, trusted: Trusted, report: ResultReport) -> None:
        """Ask for ``report`` (of an L4 repository) to be shown upstream; the poster does it."""
        now = self._clock()
        done = report.status == COMPLETED
        wanted = {
            "status": report.status, "conclusion": report.conclusion, "details_url": report.artifact_url,
            "title": f"{trusted.downstream.name}: {report.conclusion if done else 'in progress'}",
            "summary": _summary(trusted, report), "at": now,
        }
        check = UpstreamCheck(str(result_key(trusted, report)), trusted.upstream, trusted.sha,
                              trusted.installation_id, check_name(trusted, report), wanted_rank=2 if done else 1,
                              wanted=dumps(wanted), next_at=now)
        await self.store.want_upstream_check(check, now + self.retention)
        self._wake.set()

    async def post_due(self, limit: int = 8) -> int:
        due = await self.store.take_due_upstream_checks(self._clock(), LEASE, limit)
        for check in due:  # one at a time: a check's create and its update stay in order
            await self._post(check)
        return len(due)

    async def run(self) -> None:
        """Forever (owned by ``ExternalCI``): post due checks; sleep until woken or ``IDLE_POLL``."""
        while True:
            self._wake.clear()
            try:
                await self.post_due()
            except IntegrationError as err:
                log.error("posting upstream checks failed, trying again shortly: %s", err)
            try:
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
            except TimeoutError:
                pass

    async def _post(self, check: UpstreamCheck) -> None:
        wanted = json.loads(check.wanted)
        fields = {"check": check.name, "upstream": str(check.upstream), "sha": check.sha[:12]}
        try:
            external_id = await self._send(check, wanted)
        except ForgeUnavailable as err:
            attempts = check.attempts + 1
            if attempts >= GIVE_UP_ATTEMPTS:
                await self.store.upstream_check_retry(check.key, attempts, NEVER, str(err))
                log.error("gave up showing an out-of-tree result upstream: %s", err, extra={"fields": fields})
                return
            pause = min(BACKOFF_MAX, BACKOFF * 2 ** check.attempts)
            await self.store.upstream_check_retry(check.key, attempts, self._clock() + pause, str(err))
            log.warning("the upstream forge is down, the out-of-tree result is shown later: %s", err,
                        extra={"fields": fields})
            return
        except (ForgeRejected, ForgeAuthError, UnsafeForgeUrl) as err:
            await self.store.upstream_check_retry(check.key, check.attempts + 1, NEVER, str(err))
            log.error("the upstream forge refused an out-of-tree result: %s", err, extra={"fields": fields})
            return
        await self.store.upstream_check_shown(check.key, external_id, check.wanted_rank)
        self.posted += 1
        log.info("out-of-tree result shown upstream", extra={"fields": {**fields, "status": wanted["status"]}})

    async def _send(self, check: UpstreamCheck, wanted: dict[str, object]) -> str:
        done = wanted["status"] == COMPLETED
        if check.upstream.forge is Forge.GITHUB:
            if self.github is None:
                raise ForgeAuthError("no GitHub App is configured: L4 results cannot be shown on GitHub")
            repo = Repo(Forge.GITHUB, check.upstream.name, "", check.installation_id)
            at = _iso(float(wanted["at"]))  # type: ignore[arg-type]
            fields = CheckRun(
                status=str(wanted["status"]), conclusion=str(wanted["conclusion"]) if done else None,
                details_url=str(wanted["details_url"]) if wanted["details_url"] else None,
                completed_at=at if done else None,
                output=CheckRunOutput(title=str(wanted["title"]), summary=str(wanted["summary"])),
            )
            if not check.external_id:
                created = CheckRun(name=check.name, head_sha=check.sha, started_at=at, status=fields.status,
                                   conclusion=fields.conclusion, details_url=fields.details_url,
                                   completed_at=fields.completed_at, output=fields.output)
                return str(await self.github.create_check_run(repo, created))
            await self.github.update_check_run(repo, int(check.external_id), fields)
            return check.external_id
        if self.forgejo is None:
            raise ForgeAuthError("no Forgejo API access is configured: L4 results cannot be shown on Forgejo")
        state = _FORGEJO_STATES.get(str(wanted["conclusion"]), "failure") if done else "pending"
        await self.forgejo.set_status(
            Repo(Forge.FORGEJO, check.upstream.name, ""), check.sha,
            CommitStatus(state, check.name, str(wanted["title"])[:140], str(wanted["details_url"] or "")))
        return ""
