"""The node's intake: a delivery becomes a claimed attempt with a lifecycle task.

``on_job`` (called by the queue consumer for each delivery):

0. The common case in one store write: a job without ``needs`` that no node
   stored yet, with a capacity slot free right now, is stored already
   claimed (``Store.submit_claimed``) and starts; steps 1-4 are for the rest.
1. ``Store.submit`` (idempotent): the job as it is now. Finished, or held by
   another host / already running here: acknowledge, nothing to do.
2. ``needs``: while a job of the same run it needs has not succeeded, the
   delivery is held unacknowledged (it does not count against capacity:
   the prefetch is raised by one for each held job). A need that ended
   otherwise cancels the job ("dependency X failed"); needs still unfinished
   ``needs_wait`` s after the job was queued end it ``failed`` (a need that
   was never submitted must not hold a job forever).
3. A capacity slot (total and the label's limit). The node does not
   consume a label at its limit (``paused_labels``); a delivery of it that
   was already on its way is held like a ``needs`` hold, so one busy label
   cannot use up the prefetch of the others.
4. ``Store.claim`` (durable) - only then is the delivery acknowledged, and
   the attempt's ``AttemptRun`` starts as a task the scheduler owns.

Every hold ends with ``REQUEUE`` when the node stops taking work (drain or
shutdown), so the job goes to another node. Lifecycle tasks are tracked and
awaited by ``shutdown``; none is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from common import metrics
from common.queue.disposition import Disposition
from common.queue.publisher import JobPublisher
from common.rpc import jobs_pb2
from orchestrator.metrics import queued_seconds
from orchestrator.names import vm_name
from orchestrator.node import needs
from orchestrator.node.capacity import Capacity, Slot
from orchestrator.node.dead_letters import fail_dead_letter
from orchestrator.node.events import announce_applied, announce_transition, first_claim_event, job_event
from orchestrator.node.lifecycle import AttemptControl, AttemptRun, NodeServices
from orchestrator.node.outbox import Outbox
from orchestrator.store import JobRecord, JobState, StoreError

log = logging.getLogger(__name__)


@dataclass
class ActiveAttempt:
    """An attempt this node claimed and whose lifecycle task is running."""

    job: JobRecord
    attempt: int
    vm: str
    slot: Slot | None  # None once the VM is torn down (``_free_slot``)
    control: AttemptControl
    task: asyncio.Task[None] | None = None  # its lifecycle task


class Scheduler:
    """Turns deliveries into attempts; owns their tasks. See the module docstring."""

    def __init__(self, services: NodeServices, capacity: Capacity, publisher: JobPublisher,
                 *, max_waiting: int, needs_poll: float, on_change: Callable[[], None],
                 needs_wait: float = 3600.0) -> None:
        self.s = services
        self.capacity = capacity
        self.publisher = publisher
        self.max_waiting = max_waiting
        self.needs_poll = needs_poll
        self.needs_wait = needs_wait
        self.active: dict[str, ActiveAttempt] = {}
        self.waiting = 0  # deliveries held unacknowledged that the prefetch must not count
        self.accepting = True
        self.stopping = asyncio.Event()  # set with accepting=False: holds end with REQUEUE
        self._intake_closed = asyncio.Event()
        self._vms: set[str] = set()
        self._claiming: dict[str, int] = {}  # job id -> the attempt whose claim is in flight
        self._intake_calls = 0  # on_job calls running: shutdown waits for them (a claim may be in flight)
        self._intake_idle = asyncio.Event()
        self._intake_idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick = asyncio.Event()  # replaced each time an attempt ends (wakes `needs` holds)
        self._on_change = on_change
        self.finished = 0
        self._hurry = asyncio.Event()  # set: a shutdown's grace ends now

    # -- what the node reads ----------------------------------------------
    def local_vms(self) -> set[str]:
        return set(self._vms)

    def live_jobs(self) -> set[str]:
        """The jobs this node runs or is claiming right now (taken before a store read: a claim
        that commits after it was already claiming)."""
        return set(self.active) | set(self._claiming)

    def wanted_free_slots(self) -> int:
        """The consumer's free slots: free capacity plus the held jobs (0 when not accepting)."""
        if not self.accepting:
            return 0
        return self.capacity.free() + self.waiting

    def paused_labels(self) -> frozenset[str]:
        """The labels the consumer must not deliver now: those at their limit."""
        return self.capacity.full_labels()

    @property
    def idle(self) -> bool:
        return not self.active and not self._tasks

    def set_accepting(self, accepting: bool) -> None:
        if accepting != self.accepting:
            log.info("%s taking work", "resumed" if accepting else "stopped", extra={"fields": {"host": self.s.host}})
            self.accepting = accepting
            if accepting:
                self._intake_closed.clear()
            else:
                self._intake_closed.set()
            self._on_change()

    def stop_intake(self) -> None:
        """For good (shutdown): every hold returns REQUEUE."""
        self.stopping.set()
        self.set_accepting(False)

    # -- the consumer's callbacks -------------------------------------------
    async def on_job(self, request: jobs_pb2.JobRequest) -> Disposition:
        self._intake_calls += 1
        self._intake_idle.clear()
        try:
            return await self._take(request)
        finally:
            self._intake_calls -= 1
            if not self._intake_calls:
                self._intake_idle.set()

    async def _take(self, request: jobs_pb2.JobRequest) -> Disposition:
        if not self.accepting:
            return Disposition.REQUEUE
        if not request.needs:
            started = await self._submit_claimed(request)
            if started is not None:
                return started
        # No shortcut on `job_id in self.active`: the request may be of a NEW attempt
        # (a retry, a lapsed-host requeue) while the old one is still winding down here.
        job = await self.s.store.submit(request)
        # Provisioning here but not running here: this node's claim committed and its answer was
        # lost (the connection died after the commit). The redelivery takes it up (the claim of
        # an attempt a host holds applies again for that host), instead of leaving it to the sweep.
        answer_lost = job.state is JobState.PROVISIONING and job.host == self.s.host
        if job.state is not JobState.QUEUED and not answer_lost:
            return Disposition.ACK  # finished, or another host (or attempt) holds it
        if answer_lost and isinstance(self.s.events, Outbox):
            await self.s.events.recover()  # the `provisioning` event the lost claim stored goes out first
        if request.needs and not answer_lost:
            verdict = await self._hold_for_needs(job)
            if verdict is not None:
                return verdict
            job = await self.s.store.get_job(job.job_id) or job
            if job.state is not JobState.QUEUED:
                return Disposition.ACK
        slot = await self._acquire(job)
        if slot is None:
            return Disposition.REQUEUE
        return await self._claim(job, slot, announce=not answer_lost)

    async def on_dead_letter(self, job_id: str | None, reason: str,
                             request: jobs_pb2.JobRequest | None = None) -> None:
        """A request the queue gave up on: its job ends ``failed`` with the reason (dead_letters.py)."""
        await fail_dead_letter(self.s, job_id, reason, request)

    async def _end(self, job: JobRecord, attempt: int, state: JobState, reason: str, host: str = "") -> None:
        """End ``attempt`` in ``state`` and announce it - one store transaction with a durable outbox."""
        event = job_event(job, state, attempt=attempt, host=host, reason=reason)
        await announce_transition(self.s.store, self.s.events, self.s.host, job.job_id, attempt, state, reason, event)

    # -- steps of on_job ------------------------------------------------------
    async def _hold_for_needs(self, job: JobRecord) -> Disposition | None:
        """None once every need succeeded; otherwise how to settle the delivery."""
        held = False
        try:
            while True:
                blocker = await self._needs_blocker(job)
                if blocker is None:
                    return None
                if blocker:
                    reason = f"dependency {blocker} failed"
                    # A conditional move, not Store.cancel: only the one who applies a
                    # cancellation announces it (an operator may have cancelled it meanwhile).
                    await self._end(job, job.attempt, JobState.CANCELLED, reason)
                    return Disposition.ACK
                if await self._needs_expired(job):
                    return Disposition.ACK
                if not self.accepting:
                    return Disposition.REQUEUE
                if not held:
                    if self.waiting >= self.max_waiting:
                        # Too many held: send it round the queue again after a pause.
                        await self._wait_tick(self.needs_poll)
                        await self.publisher.publish([job.request])
                        return Disposition.ACK
                    held = True
                    self.waiting += 1
                    self._on_change()
                await self._wait_tick(self.needs_poll)
        finally:
            if held:
                self.waiting -= 1
                self._on_change()

    async def _needs_expired(self, job: JobRecord) -> bool:
        """End the job ``failed`` once its needs waited past ``needs_wait``; True when it is over."""
        # Measured from when the attempt was queued (the store's clock), so a request
        # sent round the queue again, or held by another node, keeps the same deadline.
        waited = (datetime.now(UTC) - job.updated_at).total_seconds()
        if waited < self.needs_wait:
            return False
        missing = needs.unfinished(job.request.needs, await self.s.store.jobs_of_run(job.run_id))
        reason = (f"needs {', '.join(missing)} did not finish within {self.needs_wait:g}s "
                  f"(timers.needs_wait); a need never submitted is never met")
        await self._end(job, job.attempt, JobState.FAILED, reason)
        return True

    async def _acquire(self, job: JobRecord) -> Slot | None:
        """A capacity slot; None when intake closes first (or too many deliveries are held).

        A job whose label is at its limit cannot start however many slots are free: it is held
        like a ``needs`` hold (not counted against the prefetch; the node also stops consuming
        that label meanwhile, so only deliveries already on their way are held), else it would
        use up credit another label could start a job with. A job that waits for any slot
        (the node is full) keeps its credit: no other job could start either.
        """
        slot = self.capacity.try_acquire(job.runs_on, job.job_id) if self.accepting else None
        if slot is not None or not self.accepting:
            return slot
        held = self.capacity.label_full(job.runs_on)
        if held:
            if self.waiting >= self.max_waiting:
                await self._wait_tick(self.needs_poll)  # round the queue again, after a pause
                return None
            self.waiting += 1
            self._on_change()
        try:
            return await self.capacity.acquire(job.runs_on, job.job_id, self._intake_closed)
        finally:
            if held:
                self.waiting -= 1
                self._on_change()

    async def _needs_blocker(self, job: JobRecord) -> str | None:
        return needs.blocker(job.request.needs, await self.s.store.jobs_of_run(job.run_id))

    async def _wait_tick(self, timeout: float) -> None:
        tick = self._tick
        waiters = {asyncio.ensure_future(tick.wait()), asyncio.ensure_future(self._intake_closed.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _submit_claimed(self, request: jobs_pb2.JobRequest) -> Disposition | None:
        """Step 0 of ``on_job`` (``Store.submit_claimed``); None, having changed nothing, when it
        does not apply: the caller goes the ordinary way."""
        job_id = request.job_id
        if job_id in self._claiming or job_id in self.active or not self.accepting:
            return None
        slot = self.capacity.try_acquire(request.runs_on, job_id)
        if slot is None:
            return None
        vm = vm_name(job_id, 1)
        stored: list[JobRecord | None] = [None]

        async def write(events: Sequence[jobs_pb2.JobEvent]) -> bool:
            stored[0] = await self.s.store.submit_claimed(request, self.s.host, vm, events)
            return stored[0] is not None

        if not await self._make_claim(job_id, 1, vm, slot, write, first_claim_event(request, self.s.host)):
            return None
        assert stored[0] is not None
        self._start(stored[0], slot, vm)
        return Disposition.ACK

    async def _claim(self, job: JobRecord, slot: Slot, announce: bool = True) -> Disposition:
        """Claim ``job``'s attempt with ``slot`` and start it (its `provisioning` event stored with the
        claim, unless ``announce`` is False: a claim made again, whose first commit stored it)."""
        if not self.accepting:  # a slot came free as the node stopped taking work
            self.capacity.release(slot)
            return Disposition.REQUEUE
        previous = self.active.get(job.job_id)
        claiming = self._claiming.get(job.job_id, 0)
        if claiming >= job.attempt or (previous is not None and previous.attempt >= job.attempt):
            self.capacity.release(slot)
            return Disposition.ACK  # a redelivery of what is being claimed or runs here
        vm = vm_name(job.job_id, job.attempt)
        provisioning = [job_event(job, JobState.PROVISIONING, attempt=job.attempt, host=self.s.host)]
        if not announce:
            provisioning = []
        if await self._make_claim(
                job.job_id, job.attempt, vm, slot,
                lambda stored: self.s.store.claim(job.job_id, job.attempt, self.s.host, vm, events=stored),
                *provisioning):
            self._start(job, slot, vm)
        return Disposition.ACK  # started, or not ours

    async def _make_claim(self, job_id: str, attempt: int, vm: str, slot: Slot,
                          write: Callable[[Sequence[jobs_pb2.JobEvent]], Awaitable[bool]],
                          *provisioning: jobs_pb2.JobEvent) -> bool:
        """Claim through ``write``, which stores the PROVISIONING event with the claim (one
        statement on PostgreSQL). False, with the VM name and ``slot`` let go, when it did not apply."""
        self._vms.add(vm)  # before the claim: reconciliation must never see it as an orphan
        self._claiming[job_id] = attempt
        claimed = False
        try:
            claimed = await announce_applied(self.s.events, write, *provisioning)
        finally:
            if self._claiming.get(job_id) == attempt:
                del self._claiming[job_id]
            if not claimed:
                self._vms.discard(vm)
                self.capacity.release(slot)
        return claimed

    def _start(self, job: JobRecord, slot: Slot, vm: str) -> None:
        """Run the attempt this node just claimed, as a task the scheduler owns."""
        metrics.job_claimed(job.runs_on, queued_seconds(job))
        previous = self.active.get(job.job_id)  # an older attempt still winding down here, if any
        active = ActiveAttempt(job, job.attempt, vm, slot, AttemptControl())
        self.active[job.job_id] = active
        before = None
        if previous is not None:
            # The store moved on from the old attempt; let it go before the new one starts.
            previous.control.abort()
            before = previous.task
        task = asyncio.create_task(self._run(active, before), name=f"job {job.job_id}#{job.attempt}")
        active.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, active: ActiveAttempt, before: asyncio.Task[None] | None = None) -> None:
        job = active.job
        try:
            if before is not None:
                await asyncio.wait({before})
            run = AttemptRun(self.s, job, active.vm, active.control, on_torn_down=lambda: self._free_slot(active))
            await run.run()
        except Exception as err:  # noqa: BLE001 - a bug must still end the job, not leave it held
            log.exception("attempt failed unexpectedly", extra={"fields": {"job": job.job_id}})
            reason = f"internal error on {self.s.host}: {type(err).__name__}: {err}"
            event = job_event(job, JobState.ERRORED, attempt=active.attempt, host=self.s.host, reason=reason)
            try:
                await self.s.outcomes.record(event, active.control.aborting)  # retried while the store is away
            except StoreError as store_err:
                log.error("cannot record the failure (the node's sweep finishes it): %s", store_err)
        finally:
            if self.active.get(job.job_id) is active:
                del self.active[job.job_id]
            self._vms.discard(active.vm)
            self._free_slot(active)
            self.finished += 1
            self._tick.set()
            self._tick = asyncio.Event()

    def _free_slot(self, active: ActiveAttempt) -> None:
        """Capacity counts VMs: once the attempt's VM is torn down its slot takes the next job,
        while the attempt still records its final state."""
        if active.slot is not None:
            self.capacity.release(active.slot)
            active.slot = None

    # -- control from the node and the admin API ---------------------------------
    def cancel_local(self, job_id: str, reason: str, recorded: bool) -> bool:
        """Cancel the attempt of ``job_id`` running here; False when none is."""
        active = self.active.get(job_id)
        if active is None:
            return False
        active.control.cancel(reason, recorded)
        return True

    async def watch_store_once(self) -> None:
        """Cancel attempts cancelled through another node; abort ones taken from us."""
        for job_id, active in list(self.active.items()):
            if active.control.interrupted.is_set():
                continue
            now = await self.s.store.get_job(job_id)
            if now is None:
                continue
            if now.attempt != active.attempt or now.host != self.s.host:
                log.warning("attempt was taken from this host (heartbeat lapsed?)",
                            extra={"fields": {"job": job_id, "attempt": active.attempt}})
                active.control.abort()
            elif now.state is JobState.CANCELLED:
                active.control.cancel(now.reason, recorded=True)

    async def shutdown(self, grace: float) -> None:
        """Wait for the claims in flight, abort what has not started running, give running jobs
        ``grace`` s (or until ``hurry``), abort the rest, await all."""
        self.stop_intake()
        # A delivery that passed the intake check may be claiming right now (one store write):
        # its attempt must be started - and so aborted and taken back below - before this returns.
        try:
            await asyncio.wait_for(self._intake_idle.wait(), grace)
        except TimeoutError:
            log.warning("deliveries still being claimed after %gs; shutting down anyway", grace)
        for active in self.active.values():
            if not self._is_running(active):
                active.control.abort()
        if self._tasks and not self._hurry.is_set():
            finished = asyncio.ensure_future(asyncio.wait(set(self._tasks)))
            hurried = asyncio.ensure_future(self._hurry.wait())
            try:
                await asyncio.wait({finished, hurried}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (finished, hurried):
                    waiter.cancel()  # the attempts' own tasks go on: only the waits end
                await asyncio.gather(finished, hurried, return_exceptions=True)
        # Rounds: a delivery already past the intake check may still claim and start one.
        while self._tasks:
            for active in self.active.values():
                active.control.abort()
            await asyncio.wait(set(self._tasks))

    def hurry(self) -> None:
        """End a shutdown's grace now (a second Ctrl-C): running attempts are aborted and requeued."""
        self._hurry.set()

    def _is_running(self, active: ActiveAttempt) -> bool:
        session = self.s.gateway.session(active.job.job_id, active.attempt)
        return session is not None and session.connected.is_set()
