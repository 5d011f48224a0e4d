"""``UpstreamRelay``: upstream webhooks in, one dispatch per allowlisted downstream out.

``offer()`` is the one call the webhook flow makes, after the upstream's own
build was handled: it reads the change, records one dispatch per downstream
listed for the upstream (unique per delivery and downstream, so a replayed
webhook records nothing new) and wakes the sender. It never raises and
waits at most ``OFFER_DEADLINE`` for the store: the upstream's answer and
its jobs never depend on its downstreams.

``run()`` (owned by ``ExternalCI``) sends the due dispatches: a dispatch
whose downstream's forge is down is retried with a doubling pause, and
recorded ``failed`` after ``dispatch_attempts`` tries or at once when the
forge refuses it; each try counts for the downstream's health (unhealthy
after ``unhealthy_after`` failures in a row, on the dashboard, never
skipped). A downstream removed from the allowlist meanwhile gets nothing
(``dropped``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from common.validation import CloneRules, RequestInvalid
from integration.errors import ForgeAuthError, ForgeRejected, ForgeUnavailable, IntegrationError, UnsafeForgeUrl
from integration.events import Delivery, Forge
from integration.external.allowlist import RepoKey
from integration.external.allowlist_source import AllowlistSource
from integration.external.levels import Level
from integration.external.records import DROPPED, FAILED, DispatchRecord
from integration.external.senders import DispatchSender
from integration.external.settings import ExternalSettings
from integration.external.store import ExternalStore
from integration.external.upstream import UpstreamChange, dispatch_body, upstream_change
from integration.payload import PayloadError

log = logging.getLogger(__name__)

OFFER_DEADLINE = 2.0  # the most a webhook waits for the relay's store
LEASE = 300.0  # a sender that dies holding a dispatch leaves it to others after this long
BATCH = 16  # dispatches sent at once
IDLE_POLL = 2.0  # how often the sender looks for due retries when nothing wakes it


class UpstreamRelay:
    """Records and sends the dispatches of upstream changes (see the module docstring)."""

    def __init__(
        self,
        settings: ExternalSettings,
        allowlist: AllowlistSource,
        store: ExternalStore,
        senders: Mapping[Forge, DispatchSender],
        results_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.allowlist = allowlist
        self.store = store
        self.senders = dict(senders)
        self.results_url = results_url
        self._clock = clock
        self._wake = asyncio.Event()
        self.recorded = 0
        self.sent = 0
        self.failed = 0

    async def offer(self, delivery: Delivery, payload: Any) -> int:
        """Record the dispatches of one verified upstream delivery; how many were new. Never raises."""
        fields = {"forge": delivery.forge.value, "event": delivery.event, "delivery": delivery.delivery_id}
        try:
            change = upstream_change(delivery, payload, CloneRules(allow_http=self.settings.allow_http))
        except (PayloadError, RequestInvalid) as err:
            log.info("webhook not relayed: %s", err, extra={"fields": fields})
            return 0
        if change is None:
            return 0
        entries = self.allowlist.current.downstreams_of(change.upstream)
        if not entries:
            return 0
        now = self._clock()
        body = json.dumps(dispatch_body(change, self.settings.event_type, self.results_url), sort_keys=True)
        records = [self._record(change, entry.repo, entry.level, body, now) for entry in entries]
        try:
            inserted = await asyncio.wait_for(
                self.store.record_dispatches(records, now + self.settings.dispatch_retention), OFFER_DEADLINE)
        except (TimeoutError, IntegrationError) as err:
            log.error("upstream change not relayed, the store failed: %s", err or "timed out", extra={"fields": fields})
            return 0
        except Exception:  # the upstream's answer must not depend on the relay
            log.exception("upstream change not relayed", extra={"fields": fields})
            return 0
        self.recorded += len(inserted)
        if inserted:
            self._wake.set()
        log.info("upstream change relayed", extra={"fields": {
            **fields, "upstream": str(change.upstream), "downstreams": len(records), "new": len(inserted)}})
        return len(inserted)

    @staticmethod
    def _record(change: UpstreamChange, downstream: RepoKey, level: Level, body: str, now: float) -> DispatchRecord:
        return DispatchRecord(
            id=f"dsp-{uuid.uuid4().hex}", delivery=change.delivery, downstream=downstream, upstream=change.upstream,
            installation_id=change.installation_id, sha=change.sha, ref=change.ref, pr_number=change.pr_number,
            event=change.event, action=change.action, level=level, body=body, next_at=now, created_at=now,
        )

    def wake(self) -> None:
        self._wake.set()

    async def send_due(self, limit: int = BATCH) -> int:
        """Send the dispatches due now (each try recorded); how many were taken."""
        due = await self.store.take_due_dispatches(self._clock(), LEASE, limit)
        if due:
            await asyncio.gather(*(self._send(record) for record in due))
        return len(due)

    async def run(self) -> None:
        """Forever (owned by ``ExternalCI``): send due dispatches; sleep until woken or ``IDLE_POLL``."""
        while True:
            self._wake.clear()
            try:
                taken = await self.send_due()
            except IntegrationError as err:
                log.error("sending dispatches failed, trying again shortly: %s", err)
                taken = 0
            if taken < BATCH:
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
                except TimeoutError:
                    pass

    async def _send(self, record: DispatchRecord) -> None:
        fields = {"dispatch": record.id, "delivery": record.delivery, "downstream": str(record.downstream),
                  "attempt": record.attempts + 1}
        entry = self.allowlist.current.entry(record.upstream, record.downstream)
        if entry is None:
            await self.store.dispatch_finished(record.id, DROPPED, record.attempts, self._clock(),
                                               f"{record.downstream} left the allowlist of {record.upstream}")
            log.info("dispatch dropped: the downstream left the allowlist", extra={"fields": fields})
            return
        sender = self.senders.get(record.downstream.forge)
        try:
            if sender is None:
                raise ForgeAuthError(f"no API access to {record.downstream.forge.value} is configured: "
                                     f"cannot dispatch to {record.downstream}")
            await sender.send(record, entry)
        except ForgeUnavailable as err:
            await self._failed_try(record, str(err), retry=True, fields=fields)
        except (ForgeRejected, ForgeAuthError, UnsafeForgeUrl) as err:
            await self._failed_try(record, str(err), retry=False, fields=fields)
        else:
            now = self._clock()
            await self.store.dispatch_sent(record.id, now)
            await self.store.note_dispatch(record.downstream, True, now, "", self.settings.unhealthy_after)
            self.sent += 1
            log.info("dispatch sent", extra={"fields": {**fields, "after": round(now - record.created_at, 3)}})

    async def _failed_try(self, record: DispatchRecord, error: str, retry: bool, fields: dict[str, object]) -> None:
        now = self._clock()
        attempts = record.attempts + 1
        if retry and attempts < self.settings.dispatch_attempts:
            pause = min(self.settings.dispatch_backoff_max, self.settings.dispatch_backoff * 2 ** (attempts - 1))
            await self.store.dispatch_retry(record.id, attempts, now + pause, error)
            log.warning("dispatch failed, retrying in %.0fs: %s", pause, error, extra={"fields": fields})
        else:
            await self.store.dispatch_finished(record.id, FAILED, attempts, now, error)
            self.failed += 1
            log.error("dispatch failed for good after %d tries: %s", attempts, error, extra={"fields": fields})
        before = await self.store.health(record.downstream)
        after = await self.store.note_dispatch(record.downstream, False, now, error, self.settings.unhealthy_after)
        if before.healthy and not after.healthy:
            log.error("downstream %s is unhealthy: %d dispatches failed in a row (last: %s)", record.downstream,
                      after.failures, error, extra={"fields": fields})
