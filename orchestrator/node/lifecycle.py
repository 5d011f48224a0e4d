"""One attempt of one job on this node, from claim to the last event.

    claimed (provisioning) -> secrets -> prepare -> boot -> runner calls in -> running
        -> outcome -> teardown (ALWAYS) -> finalize (store) -> event

A job that declares secrets gets their values first (``SecretBroker``): one
it may not have ends it ``failed`` with the reason before any VM exists, a
secret store that fails ends it ``errored``. Every phase has a deadline;
one that trips, or a driver error, ends the attempt ``errored`` with a
one-line reason (plus the VM's console tail when the driver has one). A running job's runner must also make some call at
least every ``timeouts.runner_silence`` s (it heartbeats every couple of
seconds): a runner that died or hangs ends the attempt ``errored`` ("the
runner stopped answering for 60s") instead of holding it to the job
timeout. A cancel (``AttemptControl.cancel``) stops provisioning at once, or
reaches a running runner through ``gateway.cancel`` and gives it
``cancel_grace`` to report; a cancel the store already holds was announced by
whoever made it, so the attempt only records its steps. An abort (the node
shutting down, or the store saying the attempt is no longer ours) tears the
VM down but leaves the store untouched, so the attempt is requeued
(``Store.requeue_host`` / ``requeue_lapsed``) and runs again elsewhere -
unless the runner had already finished: an outcome in hand is recorded
whatever the abort (the store refuses it if the attempt was taken away).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from common import metrics
from common.bootstrap import RunnerBootstrap
from common.queue.events import EventPublisher
from common.rpc import jobs_pb2
from orchestrator.drivers.base import Driver, VmSpec
from orchestrator.drivers.errors import DriverError, JobRefused
from orchestrator.logstore.settings import LogsConfig
from orchestrator.node.events import announce_applied, announce_transition, job_event, step_event
from orchestrator.node.failnote import note_failure
from orchestrator.node.outcomes import Outcomes, while_unavailable
from orchestrator.node.settings import TimeoutConfig
from common.artifacts import ArtifactError
from orchestrator.artifacts.store import ArtifactSource
from orchestrator.caches.scope import cache_scope
from orchestrator.node.needs import artifact_sources
from orchestrator.runnerapi import AssignedJob, JobOutcome, RunnerGateway
from orchestrator.secrets.broker import Granted, SecretBroker, SecretsRefused
from orchestrator.secrets.errors import SecretError
from orchestrator.store import JobRecord, JobState, Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
CONSOLE_LINES = 20
TOKEN_SLACK = 300.0  # beyond the last deadline: clocks, a slow Complete


@dataclass(frozen=True)
class NodeServices:
    """What every attempt on this node uses; built once by the node."""

    host: str
    store: Store
    driver: Driver
    gateway: RunnerGateway
    events: EventPublisher
    timeouts: TimeoutConfig
    runner_address: str  # HOST:PORT the runner in the VM dials
    outcomes: Outcomes  # records final states, however long the store is away
    secrets: SecretBroker | None = None  # None: a job that declares secrets is refused them
    logs: LogsConfig = field(default_factory=LogsConfig)
    log_done: Callable[[str, int], None] | None = None  # (job id, attempt) ended here: archive its log


class AttemptControl:
    """Signals from the node into one running attempt (cancel, abort)."""

    def __init__(self) -> None:
        self.interrupted = asyncio.Event()
        self.cancel_reason: str | None = None
        self.cancel_recorded = False  # the store already holds the cancellation
        self.aborted = False
        self.aborting = asyncio.Event()  # set by abort(): stop waiting for an unreachable store
        self._stopped: asyncio.Future[None] | None = None

    def stopped(self) -> asyncio.Future[None]:
        """A future done once the attempt is interrupted, shared by every phase: a phase
        waits on it instead of starting (and cancelling) a task on ``interrupted.wait()``."""
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
            if self.interrupted.is_set():
                self._stopped.set_result(None)
        return self._stopped

    def _interrupt(self) -> None:
        self.interrupted.set()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def cancel(self, reason: str, recorded: bool) -> None:
        """End the attempt ``cancelled``; ``recorded`` when ``Store.cancel`` already did."""
        if self.cancel_reason is None:
            self.cancel_reason = reason or "cancelled"
            self.cancel_recorded = recorded
        self._interrupt()

    def abort(self) -> None:
        """Tear down without finalizing: the attempt will be requeued."""
        self.aborted = True
        self.aborting.set()
        self._interrupt()


class Interrupted(Exception):
    """A phase was cut short by a cancel or an abort."""


class PhaseFailed(Exception):
    """A phase failed or timed out; ``reason`` is what the job's ``errored`` says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NotStarted(Exception):
    """The attempt ends before its VM is prepared, in ``state`` with ``reason``."""

    def __init__(self, state: JobState, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class RunnerSilent(PhaseFailed):
    """The running job's runner made no call for ``runner_silence`` s."""


async def _phase(name: str, awaitable: Awaitable[T], timeout: float, control: AttemptControl) -> T:
    """Run one phase against its deadline and the attempt's interruption."""
    work = asyncio.ensure_future(awaitable)
    stop = control.stopped()
    try:
        done, _ = await asyncio.wait({work, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
        await asyncio.gather(work, return_exceptions=True)
    if work in done and not work.cancelled():
        return work.result()
    if stop in done:
        raise Interrupted(name)
    raise PhaseFailed(f"{name} did not finish within {timeout:g}s")


def token_lifetime(t: TimeoutConfig, job_timeout: float) -> float:
    """How long an attempt's runner token must live: every phase until the runner's last call, with room."""
    return job_timeout + t.prepare + t.boot + t.runner + t.job_margin + t.cancel_grace + TOKEN_SLACK


def _with_console(message: str, console: str) -> str:
    lines = [line for line in console.splitlines() if line.strip()][-CONSOLE_LINES:]
    return message if not lines else message + "\nconsole (last lines):\n" + "\n".join(lines)


class AttemptRun:
    """Drives one claimed attempt; ``run()`` returns its final state (None when aborted)."""

    def __init__(self, services: NodeServices, job: JobRecord, vm: str, control: AttemptControl,
                 on_torn_down: Callable[[], None] | None = None) -> None:
        self.s = services
        self.job = job
        self.attempt = job.attempt
        self.vm = vm
        self.control = control
        self.on_torn_down = on_torn_down  # called once the VM is gone, before the final state is stored
        self.outcome: JobOutcome | None = None
        self._final_steps: set[int] = set()  # indices whose final state the runner's reports stored
        self._open_steps: dict[int, str] = {}  # index -> name of steps reported started, not yet ended
        # Set once the RUNNING transition was tried. The runner reports its first step as soon
        # as it has called in, which can overtake that transition: its steps wait for it, so
        # the job's `running` event always comes before the events of its steps.
        self._started = asyncio.Event()

    async def _on_step(self, step: jobs_pb2.StepResult) -> None:
        s, job_id = self.s, self.job.job_id
        await self._started.wait()
        try:
            await announce_applied(
                s.events,
                lambda stored: s.store.record_step(job_id, self.attempt, step, host=s.host, events=stored),
                step_event(self.job, self.attempt, s.host, step))
        except StoreError as err:
            log.error("cannot record a step: %s", err, extra={"fields": {"job": job_id}})
            return
        if step.state not in (jobs_pb2.STEP_STATE_UNSPECIFIED, jobs_pb2.STEP_STATE_RUNNING):
            self._final_steps.add(step.index)
            self._open_steps.pop(step.index, None)
        else:
            self._open_steps[step.index] = step.name

    async def _inputs(self) -> tuple[ArtifactSource, ...]:
        """The attempts of the jobs this one needs, whose artifacts its runner downloads."""
        needs = self.job.request.needs
        if not needs:
            return ()
        try:
            return artifact_sources(needs, await self.s.store.jobs_of_run(self.job.request.run_id))
        except StoreError as err:
            log.error("cannot look up the needed jobs' artifacts: %s", err, extra={"fields": {"job": self.job.job_id}})
            return ()

    async def _stored_artifacts(self) -> list[jobs_pb2.ArtifactInfo]:
        """What the attempt stored, for its terminal event (the forge check links to them)."""
        if not self.job.request.artifacts:
            return []
        try:
            found = await self.s.gateway.artifacts.list(self.job.job_id, self.attempt)
        except (ArtifactError, OSError) as err:
            log.error("cannot list the job's artifacts: %s", err, extra={"fields": {"job": self.job.job_id}})
            return []
        for info in found:
            del info.file_list[:]  # names and sizes are enough for an event
        return found

    async def _clone_userinfo(self) -> str:
        """The clone URL's credentials an operator's job keeps apart ("" for every other job)."""
        if not self.job.request.clone_credentials:
            return ""
        try:
            found = await self.s.store.clone_credentials(self.job.job_id)
        except StoreError as err:
            log.error("cannot read the job's clone credentials: %s", err, extra={"fields": {"job": self.job.job_id}})
            return ""
        if found is None:  # purged when the job ended: a retry clones without them
            log.warning("the job's clone credentials are gone (it finished before this attempt)",
                        extra={"fields": {"job": self.job.job_id}})
        return found or ""

    async def run(self) -> JobState | None:
        job, s = self.job, self.s  # the scheduler announced PROVISIONING with its claim
        try:
            granted = await self._secrets()
        except _NotStarted as stop:
            return await self._end_unstarted(stop.state, stop.reason)
        timeout = job.request.timeout_seconds or float(s.timeouts.job)
        session = s.gateway.assign(
            AssignedJob(job.job_id, self.attempt, job.request, granted.values, timeout_seconds=timeout,
                        clone_userinfo=await self._clone_userinfo(), artifact_inputs=await self._inputs(),
                        log_limit_bytes=s.logs.limit_for(job.runs_on), log_limit_fails=s.logs.fail_at_limit),
            on_step=self._on_step, on_delivery=granted.delivered,
            token_ttl=token_lifetime(s.timeouts, timeout),
        )
        spec = VmSpec(self.vm, job.job_id, self.attempt, job.runs_on, RunnerBootstrap(s.runner_address, session.token),
                      trusted=job.request.trusted, caches=tuple(job.request.caches),
                      cache_scope=cache_scope(job.request) if job.request.caches else None)
        state: JobState
        reason = ""
        try:
            try:
                state, reason = await self._provision_and_run(spec, session, timeout)
            except Interrupted:
                if self.control.aborted:
                    state, reason = JobState.QUEUED, "aborted"
                else:
                    state, reason = JobState.CANCELLED, self.control.cancel_reason or "cancelled"
            except PhaseFailed as err:
                state, reason = JobState.ERRORED, err.reason
            except JobRefused as err:  # not the system failing: this node will not run such a job
                state, reason = JobState.FAILED, str(err)
        finally:
            self._started.set()  # the job never started: step reports wait no longer
            await self._teardown()
            if self.on_torn_down is not None:
                self.on_torn_down()
            self._log_done()
        if self.control.aborted:
            if self.outcome is None:
                log.info("attempt aborted", extra={"fields": {"job": job.job_id, "attempt": self.attempt}})
                return None
            # The runner had finished: its outcome stands whatever the abort (a shutdown reaching
            # the teardown). If the attempt was really taken away, the store refuses it.
            state, reason = JobState.from_proto(self.outcome.state), self.outcome.reason
        if self.control.cancel_reason is not None and (self.control.cancel_recorded or state is not JobState.SUCCEEDED):
            state, reason = JobState.CANCELLED, self.control.cancel_reason
        await self._finalize(state, reason)
        return state

    async def _secrets(self) -> Granted:
        """The job's secret values, before anything of it starts; ``_NotStarted`` when it may
        not have them (failed, with the reason), the store failed (errored) or it was stopped."""
        request = self.job.request
        if not request.secrets:
            return Granted(None, self.job.job_id, self.attempt, request)
        # No broker: every declared secret is refused, with the reason.
        broker = self.s.secrets or SecretBroker(None, None, self.s.host)
        try:
            return await _phase("looking up the job's secrets",
                                broker.resolve(request, self.job.job_id, self.attempt), broker.timeout, self.control)
        except SecretsRefused as err:
            raise _NotStarted(JobState.FAILED, str(err)) from None
        except (SecretError, StoreError) as err:
            raise _NotStarted(JobState.ERRORED, f"the secret store failed: {err}") from None
        except PhaseFailed as err:
            raise _NotStarted(JobState.ERRORED, f"the secret store did not answer: {err.reason}") from None
        except Interrupted:
            raise _NotStarted(JobState.QUEUED, "aborted") from None

    async def _end_unstarted(self, state: JobState, reason: str) -> JobState | None:
        """End an attempt whose VM was never prepared (no teardown to do)."""
        self._started.set()
        if self.on_torn_down is not None:
            self.on_torn_down()
        self._log_done()
        if self.control.aborted:
            await self._announce_cancel_if_recorded()
            return None
        if self.control.cancel_reason is not None:
            state, reason = JobState.CANCELLED, self.control.cancel_reason
        log.info("job ended before it started: %s", reason, extra={"fields": {"job": self.job.job_id}})
        await self._finalize(state, reason)
        return state

    async def _provision_and_run(self, spec: VmSpec, session, timeout: float) -> tuple[JobState, str]:  # type: ignore[no-untyped-def]
        s, t, control = self.s, self.s.timeouts, self.control
        if timeout > t.job_max:
            raise JobRefused(f"the job timeout of {timeout:g}s is over this node's limit of "
                             f"{t.job_max:g}s (timeouts.job_max)")
        try:
            await _phase("preparing the VM", s.driver.prepare(spec), t.prepare, control)
            await _phase("booting the VM", s.driver.boot(spec), t.boot, control)
            await _phase("waiting for the runner", s.driver.wait_ready(spec, session.connected, t.runner),
                         t.runner + 5.0, control)
        except JobRefused:
            raise
        except DriverError as err:
            console = getattr(err, "console_tail", "") or await self._console()
            raise PhaseFailed(_with_console(str(err), console)) from err
        except PhaseFailed as err:
            raise PhaseFailed(_with_console(err.reason, await self._console())) from err
        if session.refused is not None:  # the runner called in, but speaks no version we do
            raise PhaseFailed(session.refused)
        running = job_event(self.job, JobState.RUNNING, attempt=self.attempt, host=s.host)
        try:
            # Retried while the store is away (the runner works on meanwhile, its step reports wait).
            applied = await while_unavailable(
                lambda: announce_transition(s.store, s.events, s.host, self.job.job_id, self.attempt,
                                            JobState.RUNNING, "", running),
                control.interrupted, "record that the job runs", self.job.job_id)
        except StoreUnavailable:
            raise Interrupted("starting the job") from None  # cancelled or aborted meanwhile
        finally:
            self._started.set()
        if not applied:
            await self._lost_claim()
        try:
            self.outcome = await _phase("the job", self._finished_or_silent(session), timeout + t.job_margin,
                                        control)
        except Interrupted:
            if control.aborted:
                raise
            # Cancelled while running: the runner hears it on its next heartbeat.
            s.gateway.cancel(self.job.job_id, self.attempt, control.cancel_reason or "cancelled")
            try:
                self.outcome = await asyncio.wait_for(session.wait_finished(), t.cancel_grace)
            except TimeoutError:
                pass
            raise
        except RunnerSilent:
            raise
        except PhaseFailed:
            message = f"the runner did not finish within the job timeout of {timeout:g}s"
            raise PhaseFailed(_with_console(message, await self._console())) from None
        return JobState.from_proto(self.outcome.state), self.outcome.reason

    async def _finished_or_silent(self, session) -> JobOutcome:  # type: ignore[no-untyped-def]
        """The runner's outcome; ``PhaseFailed`` once it made no call for ``runner_silence`` s.

        A runner that died (or hangs) mid-job makes no more calls: waiting for
        the job timeout would hold the slot and the VM for nothing.
        """
        limit = float(self.s.timeouts.runner_silence)
        finished = asyncio.ensure_future(session.wait_finished())
        try:
            while True:
                quiet = time.monotonic() - session.last_heartbeat
                if quiet >= limit:
                    message = f"the runner stopped answering for {limit:g}s"
                    raise RunnerSilent(_with_console(message, await self._console()))
                done, _ = await asyncio.wait({finished}, timeout=limit - quiet)
                if done:
                    return finished.result()
        finally:
            finished.cancel()
            await asyncio.gather(finished, return_exceptions=True)

    async def _lost_claim(self) -> None:
        """The RUNNING transition was refused: cancelled meanwhile, or taken from us - or it
        applied before, and its answer was lost with the connection (then carry on)."""
        try:
            now = await while_unavailable(lambda: self.s.store.get_job(self.job.job_id), self.control.interrupted,
                                          "read the job", self.job.job_id)
        except StoreUnavailable:
            raise Interrupted("starting the job") from None
        ours = now is not None and now.attempt == self.attempt and now.host == self.s.host
        if ours and now.state is JobState.RUNNING:  # type: ignore[union-attr]
            return
        if now is not None and now.attempt == self.attempt and now.state is JobState.CANCELLED:
            self.control.cancel(now.reason, recorded=True)
        else:
            self.control.abort()
        raise Interrupted("starting the job")

    async def _console(self) -> str:
        try:
            return await asyncio.wait_for(self.s.driver.console_tail(self.vm, CONSOLE_LINES), 10.0)
        except (TimeoutError, DriverError):
            return ""

    def _log_done(self) -> None:
        """The attempt's log is closed (``_teardown`` released its session) or it never had
        one: hand it to the archive. Queued only; shipping never holds up the job's result."""
        if self.s.log_done is not None:
            self.s.log_done(self.job.job_id, self.attempt)

    async def _teardown(self) -> None:
        """Stop and destroy the VM, release the session - whatever happened before."""
        s = self.s
        try:
            await asyncio.wait_for(self._destroy(), s.timeouts.teardown)
        except (TimeoutError, DriverError) as err:
            # Reconciliation retries it: the VM is no longer claimed once finalized.
            log.error("teardown failed: %s", err or "timed out", extra={"fields": {"vm": self.vm}})
        outcome = await s.gateway.release(self.job.job_id, self.attempt, "the VM was torn down")
        if self.outcome is None and outcome is not None and outcome.state != jobs_pb2.JOB_STATE_ERRORED:
            self.outcome = outcome

    async def _destroy(self) -> None:
        try:
            await self.s.driver.stop(self.vm)
        finally:
            await self.s.driver.destroy(self.vm)

    async def _finalize(self, state: JobState, reason: str) -> None:
        """Record the final state with the steps not stored yet, and announce it - retried while
        the store is away, the outcome kept on the node's disk meanwhile (``Outcomes``)."""
        s, job, outcome = self.s, self.job, self.outcome
        steps = list(outcome.steps) if outcome is not None else []
        # A step the runner reported started but whose end never came (the runner was stopped
        # or lost first: a cancel it could not answer in time, a dead VM) ends with its attempt,
        # cancelled - never left running on a finished job.
        final = [step for step in steps if step.state not in (jobs_pb2.STEP_STATE_UNSPECIFIED,
                                                             jobs_pb2.STEP_STATE_RUNNING)]
        ended = {step.index for step in final} | self._final_steps
        still_open = {**self._open_steps, **{step.index: step.name for step in steps if step not in final}}
        steps = sorted(final + [jobs_pb2.StepResult(index=index, name=name, state=jobs_pb2.STEP_STATE_CANCELLED)
                                for index, name in still_open.items() if index not in ended],
                       key=lambda step: step.index)
        # A step stored from the runner's own final report never changes.
        unreported = [step for step in steps if step.index not in self._final_steps]
        if self.control.cancel_recorded and state is JobState.CANCELLED:
            # Cancelled in the store already: whoever cancelled it announced it (cancel.py).
            try:
                await while_unavailable(lambda: self._record_steps(unreported), self.control.aborting,
                                        "record the steps", job.job_id)
            except StoreError as err:
                log.error("cannot record the steps: %s", err, extra={"fields": {"job": job.job_id}})
            log.info("job cancelled", extra={"fields": {"job": job.job_id, "attempt": self.attempt}})
            return
        tail = outcome.log_tail if outcome is not None else []
        event = job_event(job, state, attempt=self.attempt, host=s.host, reason=reason, steps=steps, log_tail=tail)
        event.artifacts.extend(await self._stored_artifacts())
        if not await s.outcomes.record(event, self.control.aborting, unreported):
            log.info("final state not applied (the attempt moved on, or waits on disk for the store)",
                     extra={"fields": {"job": job.job_id, "attempt": self.attempt, "state": state.name}})
            return
        metrics.job_finished(state.name.lower(), job.runs_on)
        if state is JobState.FAILED:  # where it failed, for the dashboard (after the state: it is a hint)
            await note_failure(s.store, s.gateway.logstore, job.job_id, self.attempt, steps)
        fields: dict[str, object] = {"job": job.job_id, "attempt": self.attempt, "state": state.name}
        if reason:
            fields["reason"] = reason
        skipped = [f"{step.index + 1} ({step.name})" for step in steps if step.state == jobs_pb2.STEP_STATE_SKIPPED]
        if skipped:
            fields["skipped"] = "steps " + ", ".join(skipped) if len(skipped) > 1 else "step " + skipped[0]
        log.info("job finished", extra={"fields": fields})

    async def _record_steps(self, steps: list[jobs_pb2.StepResult]) -> None:
        for step in steps:
            await self.s.store.record_step(self.job.job_id, self.attempt, step)
