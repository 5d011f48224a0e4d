"""The runner's job: fetch it, check out, run the steps, report, complete.

Background tasks (log shipper, batch timer, heartbeat, step reporter) are
started together and cancelled and awaited together when the job ends. Exit
codes of ``solstice-runner run`` (also in docs/runner.md):

    0  the job ran and its result reached the orchestrator (any job state)
    1  unexpected runner error
    3  no bootstrap (orchestrator address / token) found
    4  the orchestrator refused the token
    5  the orchestrator stayed unreachable past the offline limit: the current
       step was finished, later steps skipped, logs kept in the spool file
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
from collections.abc import Mapping

import grpc

from common import log as common_log
from common.bootstrap import RunnerBootstrap
from common.logbatch import JOB_STEP, job_masker, secret_values
from common.rpc import jobs_pb2, runner_pb2
from common.version import VERSION
from runner import artifacts, caches
from runner.checkout import CheckoutCancelled, CheckoutError, CheckoutTimedOut, checkout
from runner.connection import Connection, ConnectionError_, OrchestratorGone, Refused
from runner.settings import RunnerSettings
from runner.shipper import LogShipper
from runner.sink import LogSink
from runner.spool import Spool
from runner.steps import StepUser, resolve_workdir, run_step, script_argv
from runner.workspace import hand_over, step_user, write_script

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_BOOTSTRAP = 3
EXIT_REFUSED = 4
EXIT_ORCHESTRATOR_GONE = 5

# Only these variables pass from the runner's own environment to steps: the
# rest (the job token above all) stays out of user code.
PASS_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM")


class JobRun:
    """One job attempt on this VM."""

    def __init__(self, boot: RunnerBootstrap, settings: RunnerSettings) -> None:
        self.settings = settings
        self.conn = Connection(boot, settings.offline_limit, settings.backoff_initial,
                               settings.backoff_max, settings.rpc_timeout)
        self.cancelled = asyncio.Event()
        self.cancel_reason = ""
        self.internal_error = ""  # set when a background task died: the job ends errored
        self.failure = ""  # set when the job must end failed whatever its steps do (log limit, VM disk full)
        self.current_step = JOB_STEP
        self._started = time.monotonic()
        self._reports: asyncio.Queue[jobs_pb2.StepResult] = asyncio.Queue()
        self.caches: list[caches.Restored] = []  # restored before the steps; saved after them

    async def run(self) -> int:
        try:
            try:
                job = await self.conn.get_job(socket.gethostname(), VERSION)
            except Refused as err:
                log.error("%s", err)
                return EXIT_REFUSED
            except OrchestratorGone as err:
                log.error("%s", err)
                return EXIT_ORCHESTRATOR_GONE
            return await self._run(job)
        finally:
            await self.conn.close()

    async def _run(self, job: runner_pb2.RunnerJob) -> int:
        ref = job.job
        masker = job_masker(job.secrets.values())
        common_log.masker.add(*secret_values(job.secrets.values()))  # our own log lines too
        spool = Spool(self.settings.spool / f"{ref.job_id}-{ref.attempt}.spool")
        sink = LogSink(ref, masker, spool, self.settings.batch_bytes, self.settings.batch_delay,
                       self.settings.chunk_bytes, limit_bytes=job.log_limit_bytes,
                       on_limit=self._log_full if job.log_limit_fails else None)
        shipper = LogShipper(self.conn, spool)
        background = [
            asyncio.create_task(shipper.run(), name="log-shipper"),
            asyncio.create_task(sink.run_timer(), name="batch-timer"),
            asyncio.create_task(self._heartbeats(job, sink), name="heartbeat"),
            asyncio.create_task(self._reporter(), name="step-reporter"),
            asyncio.create_task(self._watch_spool(spool), name="spool-watch"),
        ]
        steps_task = asyncio.create_task(self._steps(job, sink, masker), name="steps")
        try:
            await self._supervise(steps_task, background)
            state, reason, steps = steps_task.result()
            state, reason = await self._outputs(job, state, reason, sink)
            sink.seal()
            try:
                await self._drain(background, shipper)
                await self._complete(ref, state, reason, steps, sink, shipper)
                spool.discard()  # every line is delivered: the VM's disk is not the log's home
            except OrchestratorGone as err:
                log.error("giving up on the orchestrator: %s; logs kept in %s", err, spool.path)
                return EXIT_ORCHESTRATOR_GONE
            except Refused as err:
                log.error("%s", err)
                return EXIT_REFUSED
            log.info("job complete", extra={"fields": {"state": jobs_pb2.JobState.Name(state)}})
            return EXIT_OK
        finally:
            for task in (steps_task, *background):
                task.cancel()
            await asyncio.gather(steps_task, return_exceptions=True)
            results = await asyncio.gather(*background, return_exceptions=True)
            for task, result in zip(background, results):
                if isinstance(result, Refused):
                    log.error("%s: %s", task.get_name(), result)
                elif isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    log.error("%s stopped early: %r", task.get_name(), result)
            spool.close()

    async def _outputs(self, job: runner_pb2.RunnerJob, state: int, reason: str, sink: LogSink) -> tuple[int, str]:
        """Upload the job's artifacts after its steps (not after a cancel or a lost orchestrator);
        a job whose artifacts cannot be stored ends failed, saying why."""
        if not (job.artifacts or self.caches) or state not in (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED) \
                or self.cancelled.is_set() or self.conn.gone:
            return state, reason
        workspace = self.settings.workspace / f"{job.job.job_id}-{job.job.attempt}"
        problem = await artifacts.upload(self.conn, job, workspace, state, lambda text: sink.note(JOB_STEP, text))
        if not problem:
            if state == jobs_pb2.JOB_STATE_SUCCEEDED and self.caches:
                await caches.save(self.conn, job, self.caches, lambda text: sink.note(JOB_STEP, text))
            return state, reason
        sink.note(JOB_STEP, problem)
        return jobs_pb2.JOB_STATE_FAILED, reason or problem

    async def _supervise(self, steps_task: asyncio.Task, background: list[asyncio.Task]) -> None:  # type: ignore[type-arg]
        """Wait for the steps; a background task that dies stops the job (errored)."""
        while not steps_task.done():
            alive = {t for t in background if not t.done()}
            done, _ = await asyncio.wait({steps_task, *alive}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {steps_task}:
                if not self.cancelled.is_set():
                    err = task.exception() if not task.cancelled() else None
                    log.error("%s stopped early: %s", task.get_name(), err)
                    self.internal_error = f"the runner's {task.get_name()} stopped: {err}"
                    self.cancel_reason = self.internal_error
                    self.cancelled.set()

    def _log_full(self, limit: int) -> None:
        if not self.cancelled.is_set():
            self.failure = f"the job's log reached its limit of {limit} bytes"
            self.cancel_reason = self.failure
            self.cancelled.set()

    async def _complete(self, ref: runner_pb2.JobRef, state: int, reason: str,
                        steps: list[jobs_pb2.StepResult], sink: LogSink, shipper: LogShipper) -> None:
        request = runner_pb2.CompleteRequest(job=ref, state=state, reason=reason,
                                             last_sequence=sink.last_sequence, steps=steps)
        for _ in range(3):
            try:
                await self.conn.call("Complete", lambda: self.conn.stub.Complete(
                    request, metadata=self.conn.metadata, timeout=self.settings.rpc_timeout))
                return
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                # An orchestrator that restarted between our flush and Complete
                # may lack lines: the shipper resends them, then try again.
                log.warning("Complete refused (%s); flushing logs again", err.details())
                await shipper.flush()
        raise ConnectionError_("the orchestrator keeps refusing Complete: its log lacks lines")

    async def _drain(self, background: list[asyncio.Task], shipper: LogShipper) -> None:  # type: ignore[type-arg]
        """Wait until step reports and log lines are delivered."""
        while True:
            try:
                await asyncio.wait_for(self._reports.join(), 0.5)
                break
            except TimeoutError:
                if self.conn.gone:
                    raise OrchestratorGone("step results could not be delivered") from None
                for task in background:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        await shipper.flush()

    async def _steps(self, job: runner_pb2.RunnerJob, sink: LogSink, masker
                     ) -> tuple[int, str, list[jobs_pb2.StepResult]]:  # type: ignore[no-untyped-def]
        settings = self.settings
        started = self._started = time.monotonic()
        deadline = started + job.timeout_seconds if job.timeout_seconds > 0 else None
        workspace = settings.workspace / f"{job.job.job_id}-{job.job.attempt}"
        if workspace.exists():
            shutil.rmtree(workspace)
        results: list[jobs_pb2.StepResult] = []
        user: StepUser | None = None
        try:
            user = step_user(settings.step_user) if settings.step_user else None
        except ValueError as err:
            sink.note(JOB_STEP, str(err))
            return jobs_pb2.JOB_STATE_ERRORED, str(err), self._skipped(job, 0, results)
        try:
            await checkout(job.checkout, workspace, masker, lambda text: sink.note(JOB_STEP, text),
                           deadline, self.cancelled)
        except CheckoutCancelled as err:  # as if a step had been stopped
            sink.note(JOB_STEP, str(err))
            return self._stop_state(), self.cancel_reason or "cancelled", self._skipped(job, 0, results)
        except CheckoutTimedOut as err:
            sink.note(JOB_STEP, str(err))
            return jobs_pb2.JOB_STATE_FAILED, f"job timed out after {job.timeout_seconds:g}s", \
                self._skipped(job, 0, results)
        except CheckoutError as err:
            sink.note(JOB_STEP, f"checkout failed: {err}")
            return jobs_pb2.JOB_STATE_ERRORED, f"checkout failed: {err}", self._skipped(job, 0, results)
        if job.artifact_inputs:
            problem = await artifacts.download(self.conn, job, workspace, lambda text: sink.note(JOB_STEP, text))
            if problem:
                sink.note(JOB_STEP, problem)
                return jobs_pb2.JOB_STATE_ERRORED, problem, self._skipped(job, 0, results)
        if job.caches and job.cache_mode:
            self.caches = await caches.restore_for(self.conn, job, workspace, settings, user,
                                                   lambda text: sink.note(JOB_STEP, text))
        if user is not None:
            await asyncio.to_thread(hand_over, workspace, settings.home, user)
        shell = list(job.shell) or ["bash", "-eo", "pipefail", "-c"]
        state, reason = jobs_pb2.JOB_STATE_SUCCEEDED, ""
        for index, step in enumerate(job.steps):
            name = step.name or f"step {index + 1}"
            if self.cancelled.is_set() or self.conn.gone or (deadline and time.monotonic() >= deadline):
                return self._final(state, reason, deadline), self._reason(reason, deadline), \
                    self._skipped(job, index, results)
            self.current_step = index
            self._report(jobs_pb2.StepResult(index=index, name=name, state=jobs_pb2.STEP_STATE_RUNNING))
            sink.note(index, f"step {index + 1}: {name}")
            refused = ""
            try:
                cwd = resolve_workdir(workspace, step.workdir)
            except ValueError as err:
                refused = str(err)
                sink.note(index, f"refused: {refused}")
                result = jobs_pb2.StepResult(index=index, name=name, state=jobs_pb2.STEP_STATE_FAILED, exit_code=-1)
                run = None
            else:
                env = self._env(job, step, workspace, user)
                script = await asyncio.to_thread(
                    write_script, settings.scripts, f"{job.job.job_id}-{job.job.attempt}-{index + 1}", step.run)
                try:
                    run = await run_step(script_argv(shell, script), env, cwd, sink, index,
                                         step.timeout_seconds or None, deadline, self.cancelled,
                                         job.kill_grace_seconds or 10.0, user, settings.pipe_grace)
                finally:
                    script.unlink(missing_ok=True)
                ok = run.exit_code == 0 and run.stopped is None
                # Stopped for the job's own failure (log limit, a runner fault) is failed, not cancelled.
                cancelled = run.stopped == "cancelled" and not (self.failure or self.internal_error)
                result = jobs_pb2.StepResult(
                    index=index, name=name, exit_code=run.exit_code, duration_seconds=run.duration,
                    state=jobs_pb2.STEP_STATE_SUCCEEDED if ok else jobs_pb2.STEP_STATE_CANCELLED
                    if cancelled else jobs_pb2.STEP_STATE_FAILED)
                if run.pipes_held:
                    sink.note(index, f"output still open {settings.pipe_grace:g}s after the step ended "
                                     "(a background process holds it): no longer read")
                sink.note(index, _summary(run, step.timeout_seconds, job.timeout_seconds))
            results.append(result)
            self._report(result)
            if run is not None and run.stopped == "cancelled":
                return self._stop_state(), self.cancel_reason or "cancelled", self._skipped(job, index + 1, results)
            if run is not None and run.stopped == "job-timeout":
                return jobs_pb2.JOB_STATE_FAILED, f"job timed out after {job.timeout_seconds:g}s", \
                    self._skipped(job, index + 1, results)
            if result.state == jobs_pb2.STEP_STATE_FAILED and not step.continue_on_error:
                why = f"step {index + 1} ({name}) " + (
                    f"could not start: {refused}" if refused
                    else f"timed out after {step.timeout_seconds:g}s" if run and run.stopped == "timeout"
                    else f"failed with exit code {result.exit_code}")
                return jobs_pb2.JOB_STATE_FAILED, why, self._skipped(job, index + 1, results)
        return state, reason, results

    def _stop_state(self) -> int:
        """A job stopped by ``cancelled`` ends errored (the runner failed), failed (its VM's disk) or cancelled."""
        if self.internal_error:
            return jobs_pb2.JOB_STATE_ERRORED
        return jobs_pb2.JOB_STATE_FAILED if self.failure else jobs_pb2.JOB_STATE_CANCELLED

    def _final(self, state: int, reason: str, deadline: float | None) -> int:
        if self.internal_error or self.cancelled.is_set():
            return self._stop_state()
        if self.conn.gone:
            return jobs_pb2.JOB_STATE_ERRORED
        if deadline and time.monotonic() >= deadline:
            return jobs_pb2.JOB_STATE_FAILED
        return state

    def _reason(self, reason: str, deadline: float | None) -> str:
        if self.cancelled.is_set():
            return self.cancel_reason or "cancelled"
        if self.conn.gone:
            return "the orchestrator became unreachable"
        if deadline and time.monotonic() >= deadline:
            return f"job timed out after {deadline - self._started:g}s"
        return reason

    def _skipped(self, job: runner_pb2.RunnerJob, start: int, results: list[jobs_pb2.StepResult]
                 ) -> list[jobs_pb2.StepResult]:
        for index in range(start, len(job.steps)):
            results.append(jobs_pb2.StepResult(index=index, name=job.steps[index].name or f"step {index + 1}",
                                               state=jobs_pb2.STEP_STATE_SKIPPED))
        return results

    def _env(self, job: runner_pb2.RunnerJob, step: jobs_pb2.Step, workspace,  # type: ignore[no-untyped-def]
             user: StepUser | None) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        if user is not None:  # a home and a temporary directory of the step user's own
            home = self.settings.home
            env.update(HOME=str(home), USER=user.name, LOGNAME=user.name, TMPDIR=str(home / "tmp"))
        env.update(CI="true", SOLSTICE="true", SOLSTICE_JOB_ID=job.job.job_id,
                   SOLSTICE_ATTEMPT=str(job.job.attempt), SOLSTICE_SHA=job.checkout.sha,
                   SOLSTICE_REF=job.checkout.ref, SOLSTICE_WORKSPACE=str(workspace))
        env.update(job.env)
        env.update(step.env)
        env.update(_as_env(job.secrets))
        return env

    def _report(self, result: jobs_pb2.StepResult) -> None:
        self._reports.put_nowait(result)

    async def _reporter(self) -> None:
        """Deliver step reports in order, retrying through outages."""
        backoff = self.conn.backoff()
        while True:
            result = await self._reports.get()
            while True:
                try:
                    await self.conn.call("ReportStep", lambda: self.conn.stub.ReportStep(
                        runner_pb2.StepReport(job=self.conn.job, step=result), metadata=self.conn.metadata,
                        timeout=self.settings.rpc_timeout))
                    break
                except OrchestratorGone:
                    # Keep trying: it may come back; _drain enforces the limit.
                    await asyncio.sleep(backoff.next_delay())
            backoff.reset()
            self._reports.task_done()

    async def _watch_spool(self, spool: Spool) -> None:
        """Stop the job, failed, once its log cannot be kept (the VM's disk is full)."""
        await spool.full.wait()
        log.error("%s; stopping the job", spool.full_reason)
        if not self.cancelled.is_set():
            self.failure = self.cancel_reason = spool.full_reason
            self.cancelled.set()

    async def _heartbeats(self, job: runner_pb2.RunnerJob, sink: LogSink) -> None:
        interval = job.heartbeat_interval_seconds or 2.0
        while True:
            try:
                reply = await self.conn.stub.Heartbeat(
                    runner_pb2.HeartbeatRequest(job=job.job, current_step=self.current_step,
                                                sequence=sink.last_sequence),
                    metadata=self.conn.metadata, timeout=max(interval * 2, 1.0))
            except grpc.aio.AioRpcError as err:
                try:
                    self.conn.check_final(err)
                except Refused as refused:
                    # The orchestrator no longer knows this job: stop working for it.
                    self.cancel_reason = str(refused)
                    self.cancelled.set()
                    raise
                self.conn.missed(err)  # a missed heartbeat is normal during a restart
            else:
                self.conn.reached()
                if reply.cancel and not self.cancelled.is_set():
                    self.cancel_reason = reply.reason or "cancelled"
                    sink.note(self.current_step, f"cancelling: {self.cancel_reason}")
                    self.cancelled.set()
            await asyncio.sleep(interval)


def _as_env(secrets: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in secrets.items() if k and "=" not in k}


def _summary(run, step_timeout: float, job_timeout: float) -> str:  # type: ignore[no-untyped-def]
    what = {"timeout": f"timed out after {step_timeout:g}s", "cancelled": "cancelled",
            "job-timeout": f"stopped: the job timed out after {job_timeout:g}s"}
    head = what.get(run.stopped, "exited")
    return f"{head} with exit code {run.exit_code} after {run.duration:.1f}s"


async def run_job(boot: RunnerBootstrap, settings: RunnerSettings) -> int:
    """Run the job ``boot`` names; return the process exit code."""
    try:
        return await JobRun(boot, settings).run()
    except ConnectionError_ as err:
        log.error("%s", err)
        return EXIT_ERROR
    except Exception:  # a runner bug: say so in the VM's log, exit 1, no bare traceback
        log.exception("the runner failed")
        return EXIT_ERROR
