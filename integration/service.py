"""``WebhookService``: one verified delivery in, job requests (or a reason) out.

The HTTP layer (``integration.webhooks``) has already checked the size and
the signature and decoded the JSON. Here a delivery is normalized, deduped
by delivery id and by build (forge, repo, ref, head sha), the workflow is
read at the exact commit, and one ``JobRequest`` per job is published; an
invalid workflow (not UTF-8, not KDL, nested too deep, against the schema or
the request limits of ``common.validation``) or a ref the runner cannot check
out becomes a failed check/status instead. Every field that reaches a forge
URL or a job request is checked (``common.validation``) while normalizing,
before anything is stored or sent: a bad one is a 400 naming it. When the forge API
or the queue is down, the build is deferred: kept in the store and retried
by ``retry_deferred`` (forges do not redeliver failed webhooks). Any other
failure half-way releases the claims, so a redelivery is processed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from common.queue.errors import QueueError
from common.queue.publisher import JobPublisher
from common.validation import CloneRules, RequestInvalid, ref_problem
from common.workflow import WorkflowInvalid, decode_workflow
from common.workflow.offload import WorkflowParser
from integration.cancel import CancelRequest, JobCanceller, JobRetrier, LoggingRetrier, RetryRequest
from integration.errors import ForgeAuthError, ForgeRejected, ForgeUnavailable, StoreError, UnsafeForgeUrl
from integration.events import (
    BuildRequested,
    Delivery,
    Forge,
    Ignored,
    Ping,
    PullRequestClosed,
    Repo,
    RerunRequested,
    WebhookEvent,
)
from integration.forges import forgejo_events, github_events
from integration.jobs import checked_job_requests, new_id
from integration.payload import PayloadError
from integration.reporting.contract import ForgeReporter
from integration.settings import WebhookSettings
from integration.store import SeenStore

if TYPE_CHECKING:
    from integration.external.relay import UpstreamRelay

log = logging.getLogger(__name__)

# Forges send GUIDs; anything printable and short is accepted as a dedupe key.
DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,128}")

# A taker of a deferred build that dies holding it leaves it to others after this long.
DEFERRED_LEASE = 600.0

NORMALIZERS = {Forge.GITHUB: github_events.normalize, Forge.FORGEJO: forgejo_events.normalize}


class FileSource(Protocol):
    async def fetch_file(self, repo: Repo, path: str, sha: str, deadline: float | None = None) -> bytes | None:
        """The file's bytes at ``sha``, or None when there is no such file."""


@dataclass(frozen=True, slots=True)
class ForgeLink:
    """What the service needs of one forge's API: reading files, showing invalid workflows.

    ``clone_rules``: the clone URLs its webhooks may name (http only from a forge reached over http).
    """

    files: FileSource
    reporter: ForgeReporter
    clone_rules: CloneRules = CloneRules()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one delivery (``status`` is the HTTP status)."""

    status: int
    result: str  # queued, ignored, pong, duplicate delivery, duplicate build, no workflow, invalid workflow,
    # invalid field, unbuildable ref, ...
    detail: str = ""
    run_id: str = ""
    job_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"result": self.result}
        if self.detail:
            doc["detail"] = self.detail
        if self.run_id:
            doc["run_id"] = self.run_id
            doc["jobs"] = list(self.job_ids)
        return doc


class WebhookService:
    """Turns verified deliveries into published job requests.

    Lifetime: built once the store is open and the publisher started; used
    concurrently by every request; owns nothing it has to close.
    """

    def __init__(
        self,
        settings: WebhookSettings,
        secrets: Mapping[Forge, str],
        store: SeenStore,
        publisher: JobPublisher,
        forges: Mapping[Forge, ForgeLink],
        canceller: JobCanceller,
        retrier: JobRetrier | None = None,
        parser: WorkflowParser | None = None,
    ) -> None:
        self.settings = settings
        self.parser = parser or WorkflowParser()  # off the loop, size and time limited
        self._secrets = dict(secrets)
        self.store = store
        self.publisher = publisher
        self.forges = dict(forges)
        self.canceller = canceller
        self.retrier = retrier or LoggingRetrier()
        self.published = 0  # job requests published since start
        # Out-of-tree CI: offered every verified delivery after the upstream's own build (integration.external).
        self.relay: UpstreamRelay | None = None

    def secret(self, forge: Forge) -> str:
        """The webhook secret of ``forge``; "" when that forge is not configured (every delivery gets 404)."""
        return self._secrets.get(forge, "")

    async def handle(self, delivery: Delivery, payload: Any) -> Outcome:
        fields = {"forge": delivery.forge.value, "event": delivery.event, "delivery": delivery.delivery_id}
        link = self.forges.get(delivery.forge)
        # A forge without API access still has its deliveries checked (it fails later, with a reason).
        rules = link.clone_rules if link else CloneRules(allow_local=self.settings.allow_local_checkouts)
        try:
            event = NORMALIZERS[delivery.forge](delivery.event, payload, self.settings, rules)
        except PayloadError as err:
            log.warning("malformed webhook: %s", err, extra={"fields": fields})
            return Outcome(400, "malformed payload", str(err))
        except RequestInvalid as err:
            log.warning("webhook with an invalid field: %s", err, extra={"fields": fields})
            return Outcome(400, "invalid field", str(err))
        if isinstance(event, Ping):
            log.info("ping answered", extra={"fields": fields})
            return Outcome(200, "pong", event.zen)
        if isinstance(event, Ignored):
            log.info("webhook ignored: %s", event.reason, extra={"fields": fields})
            return Outcome(202, "ignored", event.reason)
        if not DELIVERY_ID.fullmatch(delivery.delivery_id):
            return Outcome(400, "bad delivery id", "the delivery id header is missing or not 1-128 printable characters")
        key = f"{delivery.forge.value}:{delivery.delivery_id}"
        try:
            if not await self.store.claim("delivery", key, self.settings.dedupe_ttl):
                log.info("replayed delivery ignored", extra={"fields": fields})
                return Outcome(200, "duplicate delivery", "this delivery was already processed")
            try:
                outcome = await self._act(event)
            except BaseException:
                await self.store.release("delivery", key)
                raise
        except (ForgeUnavailable, QueueError, StoreError) as err:
            log.error("webhook not processed, the forge may redeliver it: %s", err, extra={"fields": fields})
            return Outcome(503, "try again", str(err))
        except (ForgeRejected, ForgeAuthError, UnsafeForgeUrl) as err:
            log.error("webhook not processed: %s", err, extra={"fields": fields})
            return Outcome(502, "forge refused", str(err))
        if outcome.status >= 500:
            await self.store.release("delivery", key)
        # The detail says why nothing ran ("... has no .solstice/workflow.kdl at <sha>"): keep it in the log.
        log.info(
            "webhook processed: %s (%s)", outcome.result, outcome.detail,
            extra={"fields": {**fields, "run_id": outcome.run_id, "jobs": len(outcome.job_ids)}},
        )
        return outcome

    async def _act(self, event: WebhookEvent) -> Outcome:
        if isinstance(event, PullRequestClosed):
            request = CancelRequest(
                forge=event.repo.forge.value, repo=event.repo.full_name, pull_request=event.pull_request,
                reason=f"pull request #{event.pull_request} was {'merged' if event.merged else 'closed'}",
            )
            reached = await self.canceller.cancel(request)
            return Outcome(202, "cancel requested", f"{request.reason}; {reached} job(s) reached")
        if isinstance(event, RerunRequested):
            retry = RetryRequest(
                forge=event.repo.forge.value, repo=event.repo.full_name, job_id=event.job_id,
                reason=f"re-run requested on {event.repo.forge.value} by {event.sender or 'someone'}",
            )
            if await self.retrier.retry(retry):
                return Outcome(202, "retry requested", f"job {event.job_id} runs again")
            return Outcome(202, "retry refused", f"job {event.job_id} is unknown here or has not finished")
        assert isinstance(event, BuildRequested)
        build_key = f"{event.repo.forge.value}:{event.repo.full_name}:{event.ref}:{event.sha}"
        if not await self.store.claim("build", build_key, self.settings.dedupe_ttl):
            return Outcome(200, "duplicate build", f"{event.ref} at {event.sha[:12]} was already built")
        try:
            try:
                return await self._build(event)
            except (ForgeUnavailable, QueueError) as err:
                # Forges do not redeliver a failed webhook: keep the build and retry it ourselves.
                await self.store.defer(
                    build_key, event.to_json(), time.time() + self.settings.retry_initial, str(err))
                log.warning(
                    "build deferred, it is retried in the background: %s", err,
                    extra={"fields": {"build": build_key}},
                )
                return Outcome(202, "deferred", f"{event.ref} at {event.sha[:12]} will be retried: {err}")
        except BaseException:
            await self.store.release("build", build_key)
            raise

    async def retry_deferred(self, now: float | None = None, limit: int = 20) -> int:
        """Retry the deferred builds due at ``now`` once each; returns how many were queued.

        One that fails again is rescheduled with a doubled pause (capped at
        ``retry_max``), or dropped with a logged reason after ``retry_give_up``
        or when the forge refuses it (4xx, credentials); then its build claim
        is released, so a new delivery of the same head builds.
        """
        now = time.time() if now is None else now
        queued = 0
        for item in await self.store.take_due(now, DEFERRED_LEASE, limit):
            fields = {"build": item.key, "retries": item.attempts + 1}
            try:
                build = BuildRequested.from_json(item.doc)
            except (ValueError, KeyError, TypeError) as err:
                await self._drop_deferred(item.key)
                log.error("dropped an unreadable deferred build: %r", err, extra={"fields": fields})
                continue
            try:
                outcome = await self._build(build)
            except (ForgeUnavailable, QueueError) as err:
                if now - item.first_at >= self.settings.retry_give_up:
                    await self._drop_deferred(item.key)
                    log.error(
                        "gave up on a deferred build after %d retries over %.0fs: %s", item.attempts + 1,
                        now - item.first_at, err, extra={"fields": fields},
                    )
                    continue
                pause = min(self.settings.retry_max, self.settings.retry_initial * 2 ** (item.attempts + 1))
                await self.store.reschedule(item.key, item.attempts + 1, now + pause, str(err))
                log.warning("deferred build still failing, next retry in %.0fs: %s", pause, err,
                            extra={"fields": fields})
                continue
            except (ForgeRejected, ForgeAuthError, UnsafeForgeUrl) as err:
                await self._drop_deferred(item.key)
                log.error("gave up on a deferred build, the forge refused it: %s", err, extra={"fields": fields})
                continue
            await self.store.forget_deferred(item.key)
            queued += outcome.result == "queued"
            log.info("deferred build done: %s (%s)", outcome.result, outcome.detail,
                     extra={"fields": {**fields, "run_id": outcome.run_id, "jobs": len(outcome.job_ids)}})
        return queued

    async def _drop_deferred(self, key: str) -> None:
        await self.store.forget_deferred(key)
        await self.store.release("build", key)

    async def _build(self, build: BuildRequested) -> Outcome:
        link = self.forges.get(build.repo.forge)
        if link is None:
            raise ForgeAuthError(f"no API access to {build.repo.forge.value} is configured, cannot read workflows")
        deadline = time.monotonic() + self.settings.handling_deadline
        problem = ref_problem(build.ref)
        if problem:
            # git allows more names than the runner fetches: say so on the commit now, not as an errored job later.
            detail = f"{build.ref} {problem}"
            await link.reporter.report_refused(build, f"Cannot build {build.ref[:100]}", detail, deadline)
            return Outcome(422, "unbuildable ref", detail)
        path = self.settings.workflow_path
        data = await link.files.fetch_file(build.repo, path, build.sha, deadline)
        if data is None:
            return Outcome(200, "no workflow", f"{build.repo.full_name} has no {path} at {build.sha[:12]}")
        run_id = new_id("run")
        try:
            workflow = await self.parser.parse(decode_workflow(data, path), path)
            requests = checked_job_requests(workflow, build, run_id, link.clone_rules, path)
        except WorkflowInvalid as err:
            await link.reporter.report_invalid_workflow(build, err.errors, deadline)
            return Outcome(200, "invalid workflow", str(err))
        await self.publisher.publish(requests)
        self.published += len(requests)
        return Outcome(202, "queued", f"{len(requests)} job(s) of {build.ref}", run_id, tuple(r.job_id for r in requests))
