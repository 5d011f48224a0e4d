"""``InstantDriver``: a VM driver for tests and benchmarks that boots nothing.

Its "VM" is a line in a journal under ``state_dir`` (``VmJournal``: so
``list_owned`` survives a crash and reconciliation has real orphans to find;
a file or directory of the VM's name counts too) plus an in-process fake
runner that talks to the node over the REAL RunnerService gRPC client
(``runner.connection.Connection``): GetJob, ReportStep per step, Heartbeat
(for cancellation) and Complete. The whole node path runs; only the VM and
the shell are skipped.

Driver ``instant-inprocess`` is the same, except that its fake runner calls
the node's RunnerService servicer in-process (``attach_gateway``; no gRPC,
no sockets): every call still goes through the servicer's token check and
the gateway's sessions, step records, log store and outcome, but what a
runner in a VM spends on the client side of gRPC (and the node on the
transport) is not charged to the node. The dispatch benchmark's figure is
judged on this driver; ``instant`` is its loopback-gRPC counterpart.

Each step's ``run`` says what the fake runner does:

    ``exit N``      the step ends with exit code N (non-zero: the job fails)
    ``sleep S``     the step takes S seconds (cancellable through heartbeats)
    ``echo TEXT``   the step logs the line TEXT (over StreamLogs) and succeeds; ``$NAME`` in
                    TEXT is the job's env or secret NAME, as a shell would expand it
    ``seq A B``     the step logs the lines A..B (numbers, as ``seq`` prints them) in batches
    ``wait PATH``   the step waits (heartbeating) until the file PATH exists
    anything else   succeeds at once

Faults for lifecycle tests are per job id: ``fail_prepare``, ``hang_prepare``,
``hang_boot`` (never return) and ``silent`` (the runner never calls in); and
per VM name ``fail_destroy`` (the next destroy of that VM fails, once) and
``hold_destroy`` (a destroy of that VM waits until its event is set).
``secrets_received`` records, per job id, the secret NAMES its runner got.
``live``/``max_live`` count VMs between prepare and destroy (``max_by_label``
per label); ``events`` records every driver call as ``(call, vm)``.

Registered as driver ``instant`` (using the ``drivers.local`` section:
``state_dir`` and ``labels``) so ``solstice-orchestrator serve`` can run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from common.bootstrap import RunnerBootstrap
from common.rpc import admin_pb2, jobs_pb2, runner_pb2
from common.version import VERSION
from orchestrator.catalog import DriverConfig, LocalConfig
from orchestrator.drivers import registry
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.errors import BootTimeout, ProvisionError
from orchestrator.drivers.journal import FILE_NAME as JOURNAL
from orchestrator.drivers.journal import VmJournal, read_journal
from orchestrator.names import is_vm_name, validate_vm_name
from orchestrator.runnerapi import RunnerGateway
from orchestrator.runnerapi.servicer import RunnerServicer
from runner.connection import FINAL, Backoff, Connection, ConnectionError_, OrchestratorGone, Refused

log = logging.getLogger(__name__)
T = TypeVar("T")


class InstantDriver:
    """See the module docstring. Not for production: nothing is isolated."""

    name = "instant"

    def __init__(self, state_dir: Path, labels: tuple[str, ...] = (), *, in_process: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self.labels = labels
        self.in_process = in_process
        self._servicer: RunnerServicer | None = None
        self.fail_prepare: set[str] = set()
        self.hang_boot: set[str] = set()
        self.hang_prepare: set[str] = set()
        self.fail_destroy: set[str] = set()
        self.hold_destroy: dict[str, asyncio.Event] = {}
        self.silent: set[str] = set()
        self.live = 0
        self.max_live = 0
        self.max_by_label: dict[str, int] = {}
        self.destroyed: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.secrets_received: dict[str, list[str]] = {}
        self._vms: dict[str, str] = {}  # live VM -> its label
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._consoles: dict[str, str] = {}  # what each live VM "printed" (kept in memory)
        self._journal = VmJournal(self.state_dir)

    def serves(self, label: str) -> bool:
        return not self.labels or label in self.labels

    def attach_gateway(self, gateway: RunnerGateway) -> None:
        """The node's gateway, which an in-process fake runner calls (ignored over gRPC)."""
        self._servicer = RunnerServicer(gateway)

    def _connect(self, spec: VmSpec) -> Connection | DirectConnection:
        if not self.in_process:
            return Connection(spec.bootstrap, offline_limit=30.0, backoff_initial=0.05, backoff_max=0.5,
                              rpc_timeout=10.0)
        if self._servicer is None:
            raise ProvisionError("the instant-inprocess driver has no gateway: attach_gateway() first")
        return DirectConnection(self._servicer, spec.bootstrap, spec.job_id, spec.attempt)

    async def prepare(self, spec: VmSpec) -> None:
        vm = validate_vm_name(spec.name)
        self.events.append(("prepare", vm))
        if vm not in self._vms:
            self._vms[vm] = spec.label
            self.live += 1
            self.max_live = max(self.max_live, self.live)
            same = sum(1 for label in self._vms.values() if label == spec.label)
            self.max_by_label[spec.label] = max(self.max_by_label.get(spec.label, 0), same)
        # One journal line per VM: the cheapest record that outlives the process. The driver
        # stands for "no VM cost" in the dispatch benchmark, so it does no more than that.
        self._journal.add(vm)
        if spec.job_id in self.fail_prepare:
            # As a real driver's failed prepare: what it made is gone before it raises.
            self._journal.remove(vm)
            if self._vms.pop(vm, None) is not None:
                self.live -= 1
            raise ProvisionError(f"cannot prepare {vm}: injected failure")
        if spec.job_id in self.hang_prepare:
            await asyncio.Event().wait()

    async def boot(self, spec: VmSpec) -> None:
        self.events.append(("boot", spec.name))
        if spec.job_id in self.hang_boot:
            await asyncio.Event().wait()
        self._consoles[spec.name] = f"{spec.name}: booted"
        if spec.job_id not in self.silent:
            conn = self._connect(spec)
            self._runners[spec.name] = asyncio.create_task(_fake_runner(conn, self.secrets_received),
                                                           name=f"fake runner {spec.name}")

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
        held = self.hold_destroy.get(name)
        if held is not None:
            self.events.append(("destroy held", name))
            await held.wait()
        if name in self.fail_destroy:
            self.fail_destroy.discard(name)
            self.events.append(("destroy failed", name))
            raise ProvisionError(f"cannot destroy {name}: injected failure")
        self._journal.remove(name)
        # A file or directory of the VM's name is its record too (left by an older run, or
        # put there by a test); on the loop: one unlink costs less than the thread hop.
        path = self.state_dir / name
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(path, ignore_errors=True)
        self._consoles.pop(name, None)
        if self._vms.pop(name, None) is not None:
            self.live -= 1
        self.destroyed.append(name)
        self.events.append(("destroy", name))

    async def list_owned(self) -> set[str]:
        return _named_like_vms(self.state_dir) | self._journal.names()

    async def console_tail(self, name: str, lines: int = 50) -> str:
        console = self._consoles.get(validate_vm_name(name), "")
        return "\n".join(console.splitlines()[-lines:])

    async def aclose(self) -> None:
        for name in list(self._runners):
            await self.stop(name)
        self._journal.close()


def recorded_vms(state_dir: Path) -> set[str]:
    """The VMs an instant driver's ``state_dir`` records (read from disk, as a restarted
    node finds them): its journal's, and files or directories named like a VM."""
    return _named_like_vms(state_dir) | read_journal(Path(state_dir) / JOURNAL)


def _named_like_vms(state_dir: Path) -> set[str]:
    try:
        return {p.name for p in Path(state_dir).iterdir() if is_vm_name(p.name)}
    except FileNotFoundError:
        return set()


def _expand(text: str, job: runner_pb2.RunnerJob) -> str:
    names = {**job.env, **job.secrets}
    return re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: names.get(m.group(1), ""), text)


async def _fake_runner(conn: Connection | DirectConnection, secrets_received: dict[str, list[str]]) -> None:
    try:
        job = await conn.get_job("instant", VERSION)
        secrets_received[job.job.job_id] = sorted(job.secrets)
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
                await _log_line(conn, job, logged, index, _expand(step.run[len("echo"):].strip(), job).encode())
            elif len(words) == 3 and words[0] == "seq":
                logged = await _log_numbers(conn, job, logged, index, int(words[1]), int(words[2]))
            elif words == ["deaf"]:  # a runner that neither finishes nor answers a cancel (a wedged VM)
                await asyncio.Event().wait()
            elif len(words) == 2 and words[0] == "wait":
                if await _wait_for_file(conn, job, Path(words[1])):
                    state, reason = jobs_pb2.JOB_STATE_CANCELLED, "cancelled"
                    code = 143
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


async def _report(conn: Connection | DirectConnection, job: runner_pb2.RunnerJob, step: jobs_pb2.StepResult) -> None:
    await conn.call("ReportStep", lambda: conn.stub.ReportStep(
        runner_pb2.StepReport(job=job.job, step=step), metadata=conn.metadata, timeout=conn.rpc_timeout))


async def _log_line(conn: Connection | DirectConnection, job: runner_pb2.RunnerJob, sequence: int, step: int, line: bytes) -> None:
    """Send one log line and wait until the node says it is durable."""
    batch = runner_pb2.LogBatch(job=job.job, first_sequence=sequence, runs=[admin_pb2.LogRun(
        step=step, stream=admin_pb2.LOG_STREAM_STDOUT, at=time.time(), lines=1, data=line)])
    call = conn.stub.StreamLogs(metadata=conn.metadata, timeout=conn.rpc_timeout)
    await call.read()  # where the node stands
    await call.write(batch)
    while (await call.read()).durable_sequence < sequence:
        pass
    await call.done_writing()


async def _log_numbers(conn: Connection | DirectConnection, job: runner_pb2.RunnerJob, logged: int, step: int,
                       first: int, last: int, batch_lines: int = 20_000) -> int:
    """Log the lines ``first..last`` in batches over one StreamLogs call; the new last sequence."""
    call = conn.stub.StreamLogs(metadata=conn.metadata, timeout=conn.rpc_timeout)
    await call.read()
    for start in range(first, last + 1, batch_lines):
        end = min(start + batch_lines - 1, last)
        batch = runner_pb2.LogBatch(job=job.job, first_sequence=logged + 1, runs=[admin_pb2.LogRun(
            step=step, stream=admin_pb2.LOG_STREAM_STDOUT, at=time.time(), lines=end - start + 1,
            data=b"\n".join(b"%d" % n for n in range(start, end + 1)))])
        await call.write(batch)
        logged += end - start + 1
        while (await call.read()).durable_sequence < logged:
            pass
    await call.done_writing()
    return logged


async def _wait_for_file(conn: Connection | DirectConnection, job: runner_pb2.RunnerJob, path: Path) -> bool:
    """Wait until ``path`` exists, heartbeating; True when a heartbeat reply says cancel."""
    while not path.exists():
        if await _sleep_or_cancel(conn, job, 0.1):
            return True
    return False


async def _sleep_or_cancel(conn: Connection | DirectConnection, job: runner_pb2.RunnerJob, seconds: float) -> bool:
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


# -- the in-process fake runner's transport ------------------------------------------


class _DirectContext:
    """What ``RunnerServicer`` uses of a ``grpc.aio.ServicerContext``, for one in-process call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        # What the client of a real call sees.
        raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def _parsed(message: T) -> T:
    """The request as the server side of a real call gets it: its own copy, parsed from bytes."""
    return type(message).FromString(message.SerializeToString())  # type: ignore[attr-defined, no-any-return]


class _DirectStream:
    """The client side of an in-process StreamLogs call: ``read``, ``write``, ``done_writing``."""

    _END = object()

    def __init__(self, servicer: RunnerServicer, metadata: tuple[tuple[str, str], ...]) -> None:
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self._replies = servicer.StreamLogs(self._iterate(), _DirectContext(metadata))

    async def _iterate(self) -> AsyncIterator[runner_pb2.LogBatch]:
        while (batch := await self._requests.get()) is not self._END:
            yield batch

    async def read(self) -> runner_pb2.LogAck:
        return await self._replies.__anext__()  # type: ignore[no-any-return]

    async def write(self, batch: runner_pb2.LogBatch) -> None:
        self._requests.put_nowait(_parsed(batch))

    async def done_writing(self) -> None:
        self._requests.put_nowait(self._END)
        async for _ in self._replies:
            pass


class _DirectStub:
    """``RunnerServiceStub``'s calls as the fake runner makes them, served in-process."""

    def __init__(self, servicer: RunnerServicer) -> None:
        self._servicer = servicer

    async def _unary(self, method: Callable[[Any, Any], Awaitable[T]], request: Any,
                     metadata: tuple[tuple[str, str], ...]) -> T:
        return await method(_parsed(request), _DirectContext(metadata))

    def GetJob(self, request: Any, *, metadata: Any, timeout: float | None = None) -> Awaitable[Any]:  # noqa: N802
        return self._unary(self._servicer.GetJob, request, metadata)

    def ReportStep(self, request: Any, *, metadata: Any, timeout: float | None = None) -> Awaitable[Any]:  # noqa: N802
        return self._unary(self._servicer.ReportStep, request, metadata)

    def Heartbeat(self, request: Any, *, metadata: Any, timeout: float | None = None) -> Awaitable[Any]:  # noqa: N802
        return self._unary(self._servicer.Heartbeat, request, metadata)

    def Complete(self, request: Any, *, metadata: Any, timeout: float | None = None) -> Awaitable[Any]:  # noqa: N802
        return self._unary(self._servicer.Complete, request, metadata)

    def StreamLogs(self, *, metadata: Any, timeout: float | None = None) -> _DirectStream:  # noqa: N802
        return _DirectStream(self._servicer, metadata)


class DirectConnection:
    """``runner.connection.Connection``'s interface for the in-process fake runner.

    Refusals are final as over gRPC; any other failure (the servicer saying
    UNAVAILABLE) is retried with backoff until ``offline_limit``.
    """

    def __init__(self, servicer: RunnerServicer, boot: RunnerBootstrap, job_id: str, attempt: int,
                 offline_limit: float = 30.0, rpc_timeout: float = 10.0) -> None:
        self.stub = _DirectStub(servicer)
        self.metadata = (("authorization", f"Bearer {boot.token}"),)
        self.offline_limit = offline_limit
        self.rpc_timeout = rpc_timeout
        self._ref = (job_id, attempt)

    async def call(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(0.05, 0.5)
        deadline = time.monotonic() + self.offline_limit
        while True:
            try:
                return await fn()
            except grpc.aio.AioRpcError as err:
                if err.code() in FINAL:
                    raise Refused(f"the orchestrator refused the call: {err.details()}") from err
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                if time.monotonic() > deadline:
                    raise OrchestratorGone(f"{name}: the node kept failing: {err.details()}") from err
            await asyncio.sleep(backoff.next_delay())

    async def get_job(self, hostname: str, version: str) -> runner_pb2.RunnerJob:
        req = runner_pb2.GetRunnerJobRequest(hostname=hostname, runner_version=version)
        req.job.job_id, req.job.attempt = self._ref
        return await self.call("GetJob", lambda: self.stub.GetJob(req, metadata=self.metadata,
                                                                   timeout=self.rpc_timeout))

    async def close(self) -> None:
        pass


def _instant(config: DriverConfig) -> InstantDriver:
    local: LocalConfig = config.local
    return InstantDriver(local.state_dir, local.labels)


def _instant_inprocess(config: DriverConfig) -> InstantDriver:
    local: LocalConfig = config.local
    return InstantDriver(local.state_dir, local.labels, in_process=True)


if "instant" not in registry.DRIVERS:
    registry.register("instant", _instant)
    registry.register("instant-inprocess", _instant_inprocess)
