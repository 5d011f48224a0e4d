"""``EventReporter``: the handler of the integration's event queue.

Only jobs the integration created itself from a verified webhook
(``JobEvent.source`` = ``JOB_SOURCE_FORGE``) are reported: a job submitted
through AdminService (or stored before jobs carried a source) is acknowledged
without any forge call, so no caller can make Solstice post a status.

For each job-level ``JobEvent`` it shows the new state on the job's forge,
one job at a time and never backwards. One at a time: a per-job lock in the
process, and under it a per-job lease in the store (``SeenStore.lock_report``)
that holds across integration replicas sharing the store; every forge call
made under it ends before the lease does. Never backwards: the last reported
rank is kept in the store (``save_report`` only raises it), so late and
duplicated events are acknowledged without a call, and a check run found on
the forge further along is left alone.

The message is acknowledged only when the forge took the report or when it
is given up with a logged reason: the forge said 4xx (the same call would
fail again), the credentials are unusable, or the event is older than
``give_up_after``. While the forge is down (5xx, timeouts) the event is
requeued after the HTTP retries; while it rate-limits, after the wait it
asked for (no call is made to that forge before then); while the store is
down, after a pause that doubles with each consecutive store failure - the
event is never dead-lettered for an outage. Job execution never waits for
any of it, and the statuses catch up when the forge and the store return.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping

from common.keyedlocks import KeyedLocks
from common.queue.disposition import Disposition
from common.rpc import jobs_pb2
from integration.errors import ForgeAuthError, ForgeRejected, ForgeUnavailable, StoreError, UnsafeForgeUrl
from integration.reporting.contract import ForgeReporter
from integration.reporting.states import StateSpec, spec_of
from integration.store import ReportRecord, SeenStore

log = logging.getLogger(__name__)

# The pause before an event is put back while the store fails: doubles per consecutive failure.
STORE_PAUSE_INITIAL = 0.5
STORE_PAUSE_MAX = 30.0
# The longest pause before an event is put back while its forge is down or rate-limits.
FORGE_PAUSE_MAX = 60.0
# How often a replica asks for a job's lock another replica holds.
LOCK_POLL = 0.1


class EventReporter:
    """Reports job events to the forges in ``reporters`` (keyed by ``Checkout.forge``).

    ``lock_lease``: how long one replica may hold a job's reporting lock (and
    so the longest a forge call under it may take); ``holder`` names this
    replica in the store (unique by default).
    """

    def __init__(
        self,
        store: SeenStore,
        reporters: Mapping[str, ForgeReporter],
        give_up_after: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
        lock_lease: float = 300.0,
        holder: str = "",
    ) -> None:
        self.store = store
        self.reporters = dict(reporters)
        self.give_up_after = give_up_after
        self.lock_lease = lock_lease
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._locks = KeyedLocks()
        self._store_failures = 0  # consecutive; the pause before a requeue grows with them
        self.store_pause = (STORE_PAUSE_INITIAL, STORE_PAUSE_MAX)  # first pause, longest pause
        self._forge_back_at: dict[str, float] = {}  # forge -> when its rate limit or Retry-After ends
        self.reported = 0
        self.skipped = 0
        self.given_up = 0
        self.store_retries = 0  # events put back because the store failed

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
        fields = {"job_id": event.job_id, "attempt": event.attempt, "state": spec.name, "forge": forge}
        lock = self._locks.acquire(event.job_id)
        try:
            async with lock:
                back_at = self._forge_back_at.get(forge, 0.0)
                if back_at > time.time():
                    # The forge asked us to wait: no call before then (GitHub penalises early retries).
                    await asyncio.sleep(min(back_at - time.time(), FORGE_PAUSE_MAX))
                    return Disposition.REQUEUE
                disposition = await self._report_locked(event, reporter, spec, fields)
            self._store_failures = 0
            return disposition
        except StoreError as err:
            return await self._store_failed(err, fields)
        finally:
            self._locks.release(event.job_id)

    async def _report_locked(self, event: jobs_pb2.JobEvent, reporter: ForgeReporter, spec: StateSpec,
                             fields: dict[str, object]) -> Disposition:
        """``_report`` holding the job's lock in the store (other replicas wait for it)."""
        deadline = await self._lock_across_replicas(event.job_id)
        try:
            return await self._report(event, reporter, spec, fields, deadline)
        finally:
            try:
                await self.store.unlock_report(event.job_id, self.holder)
            except StoreError as err:  # the lease ends by itself
                log.warning("cannot release the report lock of job %s: %s", event.job_id, err)

    async def _lock_across_replicas(self, job_id: str) -> float:
        """Wait for the job's lock in the store; returns the ``time.monotonic()`` deadline of the work under it."""
        while True:
            started = time.monotonic()
            if await self.store.lock_report(job_id, self.holder, time.time() + self.lock_lease):
                # Some slack for the replicas' clocks: every call under the lock ends before another may take it.
                return started + self.lock_lease * 0.9
            await asyncio.sleep(LOCK_POLL)

    async def _store_failed(self, err: StoreError, fields: dict[str, object]) -> Disposition:
        self._store_failures += 1
        self.store_retries += 1
        first, longest = self.store_pause
        pause = min(longest, first * 2 ** (self._store_failures - 1))
        log.warning("the integration store failed, the event is retried in %.1fs: %s", pause, err,
                    extra={"fields": fields})
        await asyncio.sleep(pause)
        return Disposition.REQUEUE

    async def _report(self, event: jobs_pb2.JobEvent, reporter: ForgeReporter, spec: StateSpec,
                      fields: dict[str, object], deadline: float) -> Disposition:
        previous = await self.store.get_report(event.job_id, event.attempt)
        if previous is not None and previous.rank >= spec.rank:
            self.skipped += 1
            log.debug("late or duplicate event not reported", extra={"fields": fields})
            return Disposition.ACK
        try:
            external_id = await reporter.report(event, previous, spec, deadline)
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
            if err.retry_at is not None:
                self._forge_back_at[event.checkout.forge] = max(err.retry_at, self._forge_back_at.get(
                    event.checkout.forge, 0.0))
                await asyncio.sleep(min(max(err.retry_at - time.time(), 0.0), FORGE_PAUSE_MAX))
            log.warning("the forge is unreachable, the event will be reported later: %s", err, extra={"fields": fields})
            return Disposition.REQUEUE
        # A failure here is a StoreError (requeued); the next try finds the forge's entry by its external id.
        await self.store.save_report(
            ReportRecord(event.job_id, event.attempt, event.checkout.forge, external_id, spec.rank, self._clock())
        )
        self.reported += 1
        log.info("job status reported", extra={"fields": fields})
        return Disposition.ACK
