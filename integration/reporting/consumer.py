"""``EventReporter``: the handler of the integration's event queue.

Only jobs the integration created itself from a verified webhook
(``JobEvent.source`` = ``JOB_SOURCE_FORGE``) are reported: a job submitted
through AdminService (or stored before jobs carried a source) is acknowledged
without any forge call, so no caller can make Solstice post a status.

For each job-level ``JobEvent`` it shows the new state on the job's forge,
one job at a time (a per-job lock keeps queued -> in_progress -> completed in
order even with several events in flight) and never backwards: the last
reported rank is kept in the store, so late and duplicated events are
acknowledged without a call.

The message is acknowledged only when the forge took the report or when it
is given up with a logged reason: the forge said 4xx (the same call would
fail again), the credentials are unusable, or the event is older than
``give_up_after``. While the forge is down (5xx, timeouts) the event is
requeued after the HTTP retries; job execution never waits for it, and the
statuses catch up when the forge returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from common.queue.disposition import Disposition
from common.rpc import jobs_pb2
from integration.errors import ForgeAuthError, ForgeRejected, ForgeUnavailable, UnsafeForgeUrl
from integration.reporting.contract import ForgeReporter
from integration.reporting.states import StateSpec, spec_of
from integration.store import ReportRecord, SeenStore

log = logging.getLogger(__name__)


class _KeyedLocks:
    """One lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def acquire(self, key: str) -> asyncio.Lock:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        return lock

    def release(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class EventReporter:
    """Reports job events to the forges in ``reporters`` (keyed by ``Checkout.forge``)."""

    def __init__(
        self,
        store: SeenStore,
        reporters: Mapping[str, ForgeReporter],
        give_up_after: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.reporters = dict(reporters)
        self.give_up_after = give_up_after
        self._clock = clock
        self._locks = _KeyedLocks()
        self.reported = 0
        self.skipped = 0
        self.given_up = 0

    async def handle(self, event: jobs_pb2.JobEvent) -> Disposition:
        """Report one event; the returned disposition settles its message."""
        if event.HasField("step"):
            return Disposition.ACK  # step results travel on the terminal job event
        if event.source != jobs_pb2.JOB_SOURCE_FORGE:
            log.debug("not a forge job: not reported", extra={"fields": {"job_id": event.job_id}})
            self.skipped += 1
            return Disposition.ACK
        forge = event.checkout.forge
        reporter = self.reporters.get(forge)
        spec = spec_of(event.state)
        if reporter is None or spec is None:
            log.debug("event needs no forge report", extra={"fields": {"job_id": event.job_id, "forge": forge}})
            self.skipped += 1
            return Disposition.ACK
        lock = self._locks.acquire(event.job_id)
        try:
            async with lock:
                return await self._report(event, reporter, spec)
        finally:
            self._locks.release(event.job_id)

    async def _report(self, event: jobs_pb2.JobEvent, reporter: ForgeReporter, spec: StateSpec) -> Disposition:
        fields = {"job_id": event.job_id, "attempt": event.attempt, "state": spec.name, "forge": event.checkout.forge}
        previous = await self.store.get_report(event.job_id, event.attempt)
        if previous is not None and previous.rank >= spec.rank:
            self.skipped += 1
            log.debug("late or duplicate event not reported", extra={"fields": fields})
            return Disposition.ACK
        try:
            external_id = await reporter.report(event, previous, spec)
        except (ForgeRejected, UnsafeForgeUrl) as err:
            self.given_up += 1
            log.error("the forge refused a job status, giving up on this event: %s", err, extra={"fields": fields})
            return Disposition.ACK
        except ForgeAuthError as err:
            self.given_up += 1
            log.error("cannot authenticate to the forge, giving up on this event: %s", err, extra={"fields": fields})
            return Disposition.ACK
        except ForgeUnavailable as err:
            age = self._clock() - (event.at.seconds if event.HasField("at") else self._clock())
            if age > self.give_up_after:
                self.given_up += 1
                log.error(
                    "the forge stayed unreachable for %.0fs, giving up on this event: %s", age, err,
                    extra={"fields": fields},
                )
                return Disposition.ACK
            log.warning("the forge is unreachable, the event will be reported later: %s", err, extra={"fields": fields})
            return Disposition.REQUEUE
        await self.store.save_report(
            ReportRecord(event.job_id, event.attempt, event.checkout.forge, external_id, spec.rank, self._clock())
        )
        self.reported += 1
        log.info("job status reported", extra={"fields": fields})
        return Disposition.ACK
