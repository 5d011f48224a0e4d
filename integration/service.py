"""``WebhookService``: one verified delivery in, job requests (or a reason) out.

The HTTP layer (``integration.webhooks``) has already checked the size and
the signature and decoded the JSON. Here a delivery is normalized, deduped
by delivery id and by build (forge, repo, ref, head sha), the workflow is
read at the exact commit, and one ``JobRequest`` per job is published; an
invalid workflow (not UTF-8, not KDL, nested too deep, against the schema or
the request limits of ``common.validation``) or a ref the runner cannot check
out becomes a failed check/status instead. Every field that reaches a forge
URL or a job request is checked (``common.validation``) while normalizing,
before anything is stored or sent: a bad one is a 400 naming it.

Nothing is lost between the dedupe claims and the publish: the claims and
the build itself (with the run id its job ids derive from) are written in
one transaction before the work starts (``SeenStore.start_build``), leased
for ``build_lease``. When the forge API or the queue is down (a rate limit
included), the build is deferred: its row is rescheduled and
``retry_deferred`` publishes it later (forges do not redeliver failed
webhooks); if the process dies, the lease ends and any replica finishes it.
Every publish of a build carries the same job ids, so a retry after a
partial publish cannot run a job twice. Any other failure half-way releases
the claims, so a redelivery is processed.

A build of a pull request's head cancels the jobs of the heads it
superseded (``cancel_superseded``); closing the pull request cancels them
all; "Re-run" on a check run, or on the check suite, runs jobs again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from common.errors import SolsticeError
from common.queue.errors import PublishFailed, QueueError
from common.queue.publisher import JobPublisher
from common.validation import CloneRules, RequestInvalid, ref_problem
from common.workflow import Workflow, WorkflowInvalid, decode_workflow
from common.workflow.offload import WorkflowParser
from integration.cancel import (
    CancelRequest,
    CommitRetryRequest,
    JobCanceller,
    JobRetrier,
    LoggingRetrier,
    RetryRequest,
)
from integration.errors import (
    ForgeAuthError,
    ForgeRejected,
    ForgeUnavailable,
    OrchestratorUnavailable,
    StoreError,
    UnsafeForgeUrl,
)
from integration.events import (
    BuildRequested,
    CommitRerunRequested,
    Delivery,
    Forge,
    Ignored,
    PendingBuild,
    Ping,
    PullRequestClosed,
    Repo,
    RerunRequested,
    WebhookEvent,
)
from integration.forges import forgejo_events, github_events
from integration.jobs import JOB_NAMESPACE, checked_job_requests, new_id, publish
from integration.payload import PayloadError
from integration.reporting.contract import ForgeReporter
from integration.schedules import register as register_schedules
from integration.settings import WebhookSettings
from integration.store import BuildStart, SeenStore

if TYPE_CHECKING:
    from integration.external.relay import UpstreamRelay
    from integration.greenness.recorder import GreennessRecorder

log = logging.getLogger(__name__)

# Forges send GUIDs; anything printable and short is accepted as a dedupe key.
DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,128}")
# The least time a webhook's publish gets after a slow workflow read (GitHub waits 10 s in all).
MIN_PUBLISH_TIME = 1.0

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
        # Greenness: the (queue, head) dedupe, the expected jobs, incremental selection (integration.greenness).
        self.greenness: GreennessRecorder | None = None

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
            return Outcome(400, "bad delivery id",
                           "the delivery id header is missing or not 1-128 printable characters")
        key = f"{delivery.forge.value}:{delivery.delivery_id}"
        try:
            if isinstance(event, BuildRequested):
                outcome = await self._start_build(key, event)
            else:
                outcome = await self._claimed(key, event)
        except (ForgeUnavailable, QueueError, StoreError, OrchestratorUnavailable) as err:
            log.error("webhook not processed, the forge may redeliver it: %s", err, extra={"fields": fields})
            return Outcome(503, "try again", str(err))
        except (ForgeRejected, ForgeAuthError, UnsafeForgeUrl) as err:
            log.error("webhook not processed: %s", err, extra={"fields": fields})
            return Outcome(502, "forge refused", str(err))
        # The detail says why nothing ran ("... has no .solstice/workflow.kdl at <sha>"): keep it in the log.
        log.info(
            "webhook processed: %s (%s)", outcome.result, outcome.detail,
            extra={"fields": {**fields, "run_id": outcome.run_id, "jobs": len(outcome.job_ids)}},
        )
        return outcome

    async def submit(self, source_key: str, build: BuildRequested) -> Outcome:
        """A build that did not come from a webhook (the greenness poller): the webhook's build path, deduped
        the same way (``source_key`` stands for the delivery id); never raises for an outage."""
        try:
            return await self._start_build(source_key, build)
        except (ForgeUnavailable, QueueError, StoreError, OrchestratorUnavailable) as err:
            return Outcome(503, "try again", str(err))
        except (ForgeRejected, ForgeAuthError, UnsafeForgeUrl) as err:
            return Outcome(502, "forge refused", str(err))

    async def _claimed(self, key: str, event: WebhookEvent) -> Outcome:
        """``_act`` on a delivery that is not a build, once per delivery id."""
        if not await self.store.claim("delivery", key, self.settings.dedupe_ttl):
            return Outcome(200, "duplicate delivery", "this delivery was already processed")
        try:
            outcome = await self._act(event)
        except BaseException:
            await self.store.release("delivery", key)
            raise
        if outcome.status >= 500:
            await self.store.release("delivery", key)
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
        if isinstance(event, CommitRerunRequested):
            commit = CommitRetryRequest(
                forge=event.repo.forge.value, repo=event.repo.full_name, sha=event.sha,
                reason=f"re-run of all checks requested on {event.repo.forge.value} by {event.sender or 'someone'}",
            )
            count = await self.retrier.retry_commit(commit)
            if count:
                return Outcome(202, "retry requested", f"{count} job(s) of {event.sha[:12]} run again")
            return Outcome(202, "retry refused", f"no finished job of {event.sha[:12]} is known here")
        raise AssertionError(f"not an event to act on: {event!r}")

    async def start_scheduled(self, build: BuildRequested, tick_key: str) -> Outcome:
        """Build ``build`` for a schedule's tick (integration/schedules.py): keyed by the tick, not
        the commit, so a nightly run of an unchanged branch is not a duplicate of its push."""
        return await self._start_build(tick_key, build, build_key=tick_key)

    async def _start_build(self, delivery_key: str, event: BuildRequested, build_key: str = "") -> Outcome:
        build_key = build_key or f"{event.repo.forge.value}:{event.repo.full_name}:{event.ref}:{event.sha}"
        if self.greenness is not None and await self.greenness.seen(event):
            # The (queue, head) dedupe outlives the claims: a head its queue has is built again only on request.
            return Outcome(200, "duplicate build", f"{event.ref} at {event.sha[:12]} already reached its queue")
        pending = PendingBuild(event, new_id("run"))
        started = await self.store.start_build(delivery_key, build_key, pending.to_json(), self.settings.dedupe_ttl,
                                               time.time() + self.settings.build_lease)
        if started is BuildStart.DUPLICATE_DELIVERY:
            log.info("replayed delivery ignored", extra={"fields": {"build": build_key}})
            return Outcome(200, "duplicate delivery", "this delivery was already processed")
        if started is BuildStart.DUPLICATE_BUILD:
            return Outcome(200, "duplicate build", f"{event.ref} at {event.sha[:12]} was already built")
        try:
            outcome = await self._build(pending, answer_in_time=True)
        except (ForgeUnavailable, QueueError) as err:
            # Forges do not redeliver a failed webhook: keep the build and retry it ourselves.
            log.warning("build deferred, it is retried in the background: %s", err,
                        extra={"fields": {"build": build_key}})
            await self._bookkeep(build_key, self.store.reschedule(build_key, 0, self._next_try(0, err), str(err)))
            outcome = Outcome(202, "deferred", f"{event.ref} at {event.sha[:12]} will be retried: {err}")
        except asyncio.CancelledError:
            raise  # shutting down: the lease ends and whoever runs then builds it
        except BaseException:
            await self.store.abandon_build(delivery_key, build_key)
            raise
        else:
            await self._bookkeep(build_key, self.store.forget_deferred(build_key))
        superseded = await self._supersede(event)
        if superseded:
            outcome = Outcome(outcome.status, outcome.result, f"{outcome.detail}; {superseded} superseded job(s) "
                              "cancelled", outcome.run_id, outcome.job_ids)
        return outcome

    @staticmethod
    async def _bookkeep(build_key: str, write: Awaitable[None]) -> None:
        """A store write after the build's outcome is known; if it fails, the build's row stays due
        when its lease ends, and the retry publishes the same job ids again (harmless)."""
        try:
            await write
        except StoreError as err:
            log.warning("cannot record the outcome of a build; it is published again (same job ids) once its "
                        "lease ends: %s", err, extra={"fields": {"build": build_key}})

    def _next_try(self, attempts: int, err: SolsticeError) -> float:
        """When a build that failed ``attempts`` retries (``err`` the last) is due again."""
        now = time.time()
        due = now + min(self.settings.retry_max, self.settings.retry_initial * 2.0 ** attempts)
        retry_at = getattr(err, "retry_at", None)
        return max(due, retry_at) if retry_at is not None else due

    async def _supersede(self, build: BuildRequested) -> int:
        """Cancel the jobs of the pull request's other heads; how many. Never fails the build."""
        if not build.pull_request or not self.settings.cancel_superseded:
            return 0
        request = CancelRequest(
            forge=build.repo.forge.value, repo=build.repo.full_name, pull_request=build.pull_request,
            reason=f"superseded: pull request #{build.pull_request} now builds {build.sha[:12]}", keep_sha=build.sha,
        )
        try:
            return await self.canceller.cancel(request)
        except SolsticeError as err:
            # The old head's jobs run on; the new head is built regardless.
            log.warning("cannot cancel the superseded jobs of pull request #%d: %s", build.pull_request, err,
                        extra={"fields": {"repo": build.repo.full_name}})
            return 0

    async def retry_deferred(self, now: float | None = None, limit: int = 20) -> int:
        """Retry the deferred builds due at ``now`` once each; returns how many were queued.

        Builds are taken one at a time, each leased for ``build_lease``, so a
        slow round never outlives the lease of a build it has yet to start.
        One that fails again is rescheduled with a doubled pause (capped at
        ``retry_max``; never before the forge's ``Retry-After``), or dropped
        with a logged reason after ``retry_give_up`` or when the forge
        refuses it (4xx, credentials); then its build claim is released, so
        a new delivery of the same head builds.
        """
        now = time.time() if now is None else now
        queued = 0
        for _ in range(limit):
            taken = await self.store.take_due(now, self.settings.build_lease, 1)
            if not taken:
                break
            item = taken[0]
            fields = {"build": item.key, "retries": item.attempts + 1}
            try:
                pending = PendingBuild.from_json(item.doc, legacy_run_id(item.key))
            except (ValueError, KeyError, TypeError) as err:
                await self._drop_deferred(item.key)
                log.error("dropped an unreadable deferred build: %r", err, extra={"fields": fields})
                continue
            try:
                outcome = await self._build(pending)
            except (ForgeUnavailable, QueueError) as err:
                if now - item.first_at >= self.settings.retry_give_up:
                    await self._drop_deferred(item.key)
                    log.error(
                        "gave up on a deferred build after %d retries over %.0fs: %s", item.attempts + 1,
                        now - item.first_at, err, extra={"fields": fields},
                    )
                    continue
                due = self._next_try(item.attempts + 1, err)
                await self.store.reschedule(item.key, item.attempts + 1, due, str(err))
                log.warning("deferred build still failing, next retry in %.0fs: %s", due - time.time(), err,
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
            await self._supersede(pending.build)
        return queued

    async def _drop_deferred(self, key: str) -> None:
        await self.store.forget_deferred(key)
        await self.store.release("build", key)

    async def _build(self, pending: PendingBuild, answer_in_time: bool = False) -> Outcome:
        """Read the workflow and publish its jobs. ``answer_in_time``: a forge is waiting for the
        answer, so the publish too ends by ``handling_deadline`` (then the build is deferred: its
        fixed ids make a publish that went through meanwhile harmless)."""
        build = pending.build
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
            await self._schedules(build, None)
            return Outcome(200, "no workflow", f"{build.repo.full_name} has no {path} at {build.sha[:12]}")
        try:
            workflow = await self.parser.parse(decode_workflow(data, path), path)
            await self._schedules(build, workflow)
            requests = checked_job_requests(workflow, build, pending.run_id, link.clone_rules, path)
        except WorkflowInvalid as err:
            await link.reporter.report_invalid_workflow(build, err.errors, deadline)
            return Outcome(200, "invalid workflow", str(err))
        if self.greenness is not None:
            # Records the commit and what it expects; jobs of projects untouched since green are carried, not run.
            before = len(requests)
            requests = await self.greenness.prepare(build, pending.run_id, workflow, requests, deadline)
            if not requests:
                return Outcome(200, "carried", f"all {before} job(s) of {build.ref} carried from the last green commit",
                               pending.run_id)
        if answer_in_time:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), MIN_PUBLISH_TIME)):
                    await publish(self.publisher, requests)
            except TimeoutError:
                raise PublishFailed(f"the queue did not confirm the job requests within the "
                                    f"{self.settings.handling_deadline:g}s a webhook may take") from None
        else:
            await publish(self.publisher, requests)
        self.published += len(requests)
        return Outcome(202, "queued", f"{len(requests)} job(s) of {build.ref}", pending.run_id,
                       tuple(r.job_id for r in requests))


    async def _schedules(self, build: BuildRequested, workflow: Workflow | None) -> None:
        """The branch's schedules follow its workflow (integration/schedules.py); a store failure
        is logged, not a reason to drop the build (the next push registers them)."""
        try:
            await register_schedules(self.store, build, workflow)
        except StoreError as err:
            log.warning("cannot record the branch's schedules: %s", err,
                        extra={"fields": {"repo": build.repo.full_name, "ref": build.ref}})


def legacy_run_id(build_key: str) -> str:
    """The run id of a deferred build kept without one (an older version): fixed by its key."""
    return f"run-{uuid.uuid5(JOB_NAMESPACE, build_key).hex}"
