"""``InstantDriver``: a VM driver for tests and benchmarks that boots nothing.

Its "VM" is a directory under ``state_dir`` (so ``list_owned`` survives a
crash and reconciliation has real orphans to find) plus an in-process fake
runner that talks to the node over the REAL RunnerService gRPC client
(``runner.connection.Connection``): GetJob, ReportStep per step, Heartbeat
(for cancellation) and Complete. The whole node path runs; only the VM and
the shell are skipped. Each step's ``run`` says what the fake runner does:

    ``exit N``      the step ends with exit code N (non-zero: the job fails)
    ``sleep S``     the step takes S seconds (cancellable through heartbeats)
    ``echo TEXT``   the step logs the line TEXT (over StreamLogs) and succeeds
    anything else   succeeds at once

Faults for lifecycle tests are per job id: ``fail_prepare``, ``hang_prepare``,
``hang_boot`` (never return) and ``silent`` (the runner never calls in); and
per VM name ``fail_destroy`` (the next destroy of that VM fails, once).
``live``/``max_live`` count VMs between prepare and destroy (``max_by_label``
per label); ``events`` records every driver call as ``(call, vm)``.

Registered as driver ``instant`` (using the ``drivers.local`` section:
``state_dir`` and ``labels``) so ``solstice-orchestrator serve`` can run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path

from common.rpc import admin_pb2, jobs_pb2, runner_pb2
from orchestrator.catalog import DriverConfig, LocalConfig
from orchestrator.drivers import registry
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.errors import BootTimeout, ProvisionError
from orchestrator.names import is_vm_name, validate_vm_name
from runner.connection import Connection, ConnectionError_

log = logging.getLogger(__name__)


class InstantDriver:
    """See the module docstring. Not for production: nothing is isolated."""

    name = "instant"

    def __init__(self, state_dir: Path, labels: tuple[str, ...] = ()) -> None:
        self.state_dir = Path(state_dir)
        self.labels = labels
        self.fail_prepare: set[str] = set()
        self.hang_boot: set[str] = set()
        self.hang_prepare: set[str] = set()
        self.fail_destroy: set[str] = set()
        self.silent: set[str] = set()
        self.live = 0
        self.max_live = 0
        self.max_by_label: dict[str, int] = {}
        self.destroyed: list[str] = []
        self.events: list[tuple[str, str]] = []
        self._vms: dict[str, str] = {}  # live VM -> its label
        self._runners: dict[str, asyncio.Task[None]] = {}

    def serves(self, label: str) -> bool:
        return not self.labels or label in self.labels

    async def prepare(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        self.events.append(("prepare", vm))
        if vm not in self._vms:
            self._vms[vm] = spec.label
            self.live += 1
            self.max_live = max(self.max_live, self.live)
            same = sum(1 for label in self._vms.values() if label == spec.label)
            self.max_by_label[spec.label] = max(self.max_by_label.get(spec.label, 0), same)
        (self.state_dir / vm).mkdir(parents=True, exist_ok=True)
        if spec.job_id in self.fail_prepare:
            raise ProvisionError(f"cannot prepare {vm}: injected failure")
        if spec.job_id in self.hang_prepare:
            await asyncio.Event().wait()

    async def boot(self, spec: VmSpec) -> None:
        self.events.append(("boot", spec.name))
        if spec.job_id in self.hang_boot:
            await asyncio.Event().wait()
        (self.state_dir / spec.name / "console.log").write_text(f"{spec.name}: booted\n")
        if spec.job_id not in self.silent:
            self._runners[spec.name] = asyncio.create_task(_fake_runner(spec), name=f"fake runner {spec.name}")

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(ready.wait(), timeout)
        except TimeoutError:
            raise BootTimeout(spec.name, timeout, await self.console_tail(spec.name)) from None

    async def stop(self, name: str) -> None:
        self.events.append(("stop", name))
        task = self._runners.pop(validate_vm_name(name), None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def destroy(self, name: str) -> None:
        await self.stop(name)
        if name in self.fail_destroy:
            self.fail_destroy.discard(name)
            self.events.append(("destroy failed", name))
            raise ProvisionError(f"cannot destroy {name}: injected failure")
        await asyncio.to_thread(shutil.rmtree, self.state_dir / name, True)
        if self._vms.pop(name, None) is not None:
            self.live -= 1
        self.destroyed.append(name)
        self.events.append(("destroy", name))

    async def list_owned(self) -> set[str]:
        try:
            return {p.name for p in self.state_dir.iterdir() if is_vm_name(p.name)}
        except FileNotFoundError:
            return set()

    async def console_tail(self, name: str, lines: int = 50) -> str:
        path = self.state_dir / validate_vm_name(name) / "console.log"
        try:
            return "\n".join(path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    async def aclose(self) -> None:
        for name in list(self._runners):
            await self.stop(name)


async def _fake_runner(spec: VmSpec) -> None:
    conn = Connection(spec.bootstrap, offline_limit=30.0, backoff_initial=0.05, backoff_max=0.5, rpc_timeout=10.0)
    try:
        job = await conn.get_job("instant", "instant")
        results, state, reason = [], jobs_pb2.JOB_STATE_SUCCEEDED, ""
        logged = 0
        for index, step in enumerate(job.steps):
            result = jobs_pb2.StepResult(index=index, name=step.name, state=jobs_pb2.STEP_STATE_RUNNING)
            await _report(conn, job, result)
            words = step.run.split()
            code = 0
            if len(words) == 2 and words[0] == "sleep":
                if await _sleep_or_cancel(conn, job, float(words[1])):
                    state, reason = jobs_pb2.JOB_STATE_CANCELLED, "cancelled"
                    code = 143
            elif len(words) == 2 and words[0] == "exit":
                code = int(words[1])
            elif words and words[0] == "echo":
                logged += 1
                await _log_line(conn, job, logged, index, step.run[len("echo"):].strip().encode())
            done = jobs_pb2.StepResult(index=index, name=step.name, exit_code=code,
                                       state=jobs_pb2.STEP_STATE_SUCCEEDED if code == 0 else jobs_pb2.STEP_STATE_FAILED)
            results.append(done)
            await _report(conn, job, done)
            if code != 0:
                if state == jobs_pb2.JOB_STATE_SUCCEEDED:
                    state, reason = jobs_pb2.JOB_STATE_FAILED, f"step {step.name or index} exited with {code}"
                break
        await conn.call("Complete", lambda: conn.stub.Complete(
            runner_pb2.CompleteRequest(job=job.job, state=state, reason=reason, steps=results,
                                       last_sequence=logged),
            metadata=conn.metadata, timeout=conn.rpc_timeout))
    except ConnectionError_ as err:
        log.info("fake runner gave up: %s", err)
    finally:
        await conn.close()


async def _report(conn: Connection, job: runner_pb2.RunnerJob, step: jobs_pb2.StepResult) -> None:
    await conn.call("ReportStep", lambda: conn.stub.ReportStep(
        runner_pb2.StepReport(job=job.job, step=step), metadata=conn.metadata, timeout=conn.rpc_timeout))


async def _log_line(conn: Connection, job: runner_pb2.RunnerJob, sequence: int, step: int, line: bytes) -> None:
    """Send one log line and wait until the node says it is durable."""
    batch = runner_pb2.LogBatch(job=job.job, first_sequence=sequence, runs=[runner_pb2.LogRun(
        step=step, stream=admin_pb2.LOG_STREAM_STDOUT, at=time.time(), lines=1, data=line)])
    call = conn.stub.StreamLogs(metadata=conn.metadata, timeout=conn.rpc_timeout)
    await call.read()  # where the node stands
    await call.write(batch)
    while (await call.read()).durable_sequence < sequence:
        pass
    await call.done_writing()


async def _sleep_or_cancel(conn: Connection, job: runner_pb2.RunnerJob, seconds: float) -> bool:
    """Sleep ``seconds``, heartbeating; True when a heartbeat reply says cancel."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    interval = min(job.heartbeat_interval_seconds or 1.0, 0.2)
    while loop.time() < deadline:
        reply = await conn.call("Heartbeat", lambda: conn.stub.Heartbeat(
            runner_pb2.HeartbeatRequest(job=job.job), metadata=conn.metadata, timeout=conn.rpc_timeout))
        if reply.cancel:
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), min(interval, max(0.0, deadline - loop.time())))
    return False


def _instant(config: DriverConfig) -> InstantDriver:
    local: LocalConfig = config.local
    return InstantDriver(local.state_dir, local.labels)


if "instant" not in registry.DRIVERS:
    registry.register("instant", _instant)
