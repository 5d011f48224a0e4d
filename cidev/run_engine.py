"""The orchestrator ``cidev run`` embeds: the real runner path, on this machine, for one run.

The same parts a node uses, in-process: a ``RunnerServer`` on a loopback
port, its ``RunnerGateway`` and ``LogStore``, and the ``local`` driver, which
starts a real ``solstice-runner`` subprocess per job that calls back over
gRPC, checks the commit out with git, runs the steps and streams its log.
There is no queue and no state store: a developer's run lives and dies with
the command, so the scheduling is a task per job that waits for the jobs it
``needs`` (jobs with nothing between them run at the same time).

Lifetime: ``async with LocalRun(work_dir, ...) as run: results = await run.run(requests, reporter)``;
every task is owned by a ``TaskGroup`` and every VM is destroyed in a
``finally`` (Ctrl-C included).
"""

from __future__ import annotations

import asyncio
import secrets as secrets_module
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from common.bootstrap import RunnerBootstrap
from common.rpc import admin_pb2, jobs_pb2
from common.tokens import TokenIssuer
from orchestrator.artifacts.store import ArtifactSource
from orchestrator.caches import CachesConfig, DirectoryCaches
from orchestrator.catalog import LocalConfig
from orchestrator.drivers.base import VmSpec
from orchestrator.drivers.errors import DriverError
from orchestrator.drivers.local import LocalDriver
from orchestrator.logstore import LogStore
from orchestrator.logstore.pages import frame_pages
from orchestrator.runnerapi import AssignedJob, RunnerGateway, RunnerServer
from orchestrator.singlenode.settings import installed_runner_argv

ATTEMPT = 1
DEFAULT_JOB_TIMEOUT = 3600.0
WAIT_MARGIN = 30.0  # the runner enforces the job timeout; this only catches a runner that never reports
HEARTBEAT = 1.0  # how often runners call in (heartbeat interval handed to them)
SILENT_AFTER = 20.0  # a connected runner silent this long is gone (crashed, killed)


class RunnerSilent(Exception):
    """A connected runner stopped calling in."""


@dataclass(frozen=True)
class JobResult:
    """How one job of a local run ended."""

    key: str
    state: jobs_pb2.JobState.ValueType
    reason: str
    steps: tuple[jobs_pb2.StepResult, ...]
    duration: float  # seconds from start to teardown; 0 for a job that never started

    @property
    def succeeded(self) -> bool:
        return self.state == jobs_pb2.JOB_STATE_SUCCEEDED


class Reporter(Protocol):
    """Receives a run's progress as it happens (``run_output.LinePrinter`` prints it)."""

    def job_started(self, request: jobs_pb2.JobRequest) -> None: ...

    def step(self, request: jobs_pb2.JobRequest, result: jobs_pb2.StepResult) -> None: ...

    def page(self, request: jobs_pb2.JobRequest, page: admin_pb2.LogPage) -> None: ...

    def job_finished(self, request: jobs_pb2.JobRequest, result: JobResult) -> None: ...


def runner_argv() -> tuple[str, ...]:
    """How to start ``solstice-runner run`` (the same way ``solstice serve`` does)."""
    return installed_runner_argv()


class LocalRun:
    """An embedded single-run orchestrator under ``work_dir`` (logs and runner directories)."""

    def __init__(
        self,
        work_dir: Path,
        *,
        secrets: Mapping[str, str] | None = None,
        boot_timeout: float = 60.0,
        argv: Sequence[str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.cache_dir = cache_dir
        self.secrets = dict(secrets or {})
        self.boot_timeout = boot_timeout
        self._argv = tuple(argv) if argv else runner_argv()
        self._logstore: LogStore | None = None
        self._gateway: RunnerGateway | None = None
        self._server: RunnerServer | None = None
        self._driver: LocalDriver | None = None
        self._ids: dict[str, str] = {}  # job key -> job id of the run: where a job's inputs come from

    async def __aenter__(self) -> LocalRun:
        self._logstore = LogStore(self.work_dir / "logs")
        # A fresh key per run: the tokens mean nothing outside this process.
        issuer = TokenIssuer(secrets_module.token_bytes(32), ttl_seconds=48 * 3600)
        # Caches outlive the run (the next run restores them); bounded like a node's, by default.
        caches = DirectoryCaches(self.cache_dir, CachesConfig().bytes("max_repo_bytes")) \
            if self.cache_dir is not None else None
        self._gateway = RunnerGateway(self._logstore, issuer, heartbeat_interval=HEARTBEAT, caches=caches,
                                      cache_max_bytes=CachesConfig().bytes("max_cache_bytes"))
        self._server = RunnerServer(self._gateway, "127.0.0.1", 0, grace_seconds=1.0)
        # Plain processes, never contained: a developer runs their own workflow on their own
        # machine, with its tools and files, as with `make` (docs/security.md).
        self._driver = LocalDriver(LocalConfig(state_dir=self.work_dir / "vms", runner_argv=self._argv,
                                               stop_grace=5.0, contain=False), announced=False)
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._driver is not None:
            for name in await self._driver.list_owned():  # a VM whose job task was cut off
                await self._driver.destroy(name)
            await self._driver.aclose()
        if self._server is not None:
            await self._server.stop()
        if self._logstore is not None:
            await self._logstore.aclose()

    async def run(self, requests: Sequence[jobs_pb2.JobRequest], reporter: Reporter) -> list[JobResult]:
        """Run every request, each once its ``needs`` succeeded; results in request order."""
        self._ids = {r.key: r.job_id for r in requests}
        done: dict[str, asyncio.Future[JobResult]] = {
            r.key: asyncio.get_running_loop().create_future() for r in requests
        }
        async with asyncio.TaskGroup() as group:
            for request in requests:
                group.create_task(self._job_when_ready(request, done, reporter), name=f"job {request.key}")
        return [done[r.key].result() for r in requests]

    async def _job_when_ready(self, request: jobs_pb2.JobRequest,
                              done: Mapping[str, asyncio.Future[JobResult]], reporter: Reporter) -> None:
        failed = []
        for need in request.needs:
            if need in done and not (await asyncio.shield(done[need])).succeeded:
                failed.append(need)
        if failed:
            result = JobResult(request.key, jobs_pb2.JOB_STATE_CANCELLED,
                               f"not run: needed job {', '.join(failed)} did not succeed", (), 0.0)
        else:
            result = await self._run_one(request, reporter)
        reporter.job_finished(request, result)
        done[request.key].set_result(result)

    async def _run_one(self, request: jobs_pb2.JobRequest, reporter: Reporter) -> JobResult:
        assert self._gateway is not None and self._server is not None and self._driver is not None
        assert self._logstore is not None
        gateway, driver = self._gateway, self._driver
        job_secrets = {name: self.secrets[name] for name in request.secrets if name in self.secrets}
        timeout = request.timeout_seconds or DEFAULT_JOB_TIMEOUT

        async def on_step(result: jobs_pb2.StepResult) -> None:
            reporter.step(request, result)

        inputs = tuple(ArtifactSource(need, self._ids[need], ATTEMPT) for need in request.needs if need in self._ids)
        session = gateway.assign(
            AssignedJob(request.job_id, ATTEMPT, request, job_secrets, timeout_seconds=timeout,
                        artifact_inputs=inputs), on_step=on_step
        )
        spec = VmSpec.for_job(request.job_id, ATTEMPT, request.runs_on,
                              RunnerBootstrap(self._server.address, session.token))
        joblog = await self._logstore.open(request.job_id, ATTEMPT, job_secrets.values())
        started = time.monotonic()
        reporter.job_started(request)
        outcome = None
        reason = "the runner went away"
        async with asyncio.TaskGroup() as group:
            follower = group.create_task(self._follow(request, joblog, reporter), name=f"log of {request.key}")
            try:
                await driver.prepare(spec)
                await driver.boot(spec)
                await driver.wait_ready(spec, session.connected, self.boot_timeout)
                outcome = await asyncio.wait_for(self._finished_or_silent(session), timeout + WAIT_MARGIN)
            except DriverError as err:
                reason = str(err)
            except RunnerSilent as err:
                tail = await driver.console_tail(spec.name, 20)
                reason = f"{err}" + (f"; its last output:\n{tail}" if tail.strip() else "")
            except TimeoutError:
                reason = f"the runner did not report within {timeout + WAIT_MARGIN:g}s"
            finally:
                try:
                    await driver.destroy(spec.name)
                finally:
                    released = await gateway.release(request.job_id, ATTEMPT, reason)
                    outcome = outcome or released
                    if outcome is None:  # released before: the session's own outcome
                        outcome = await session.wait_finished()
            await follower
        return JobResult(request.key, outcome.state, outcome.reason, tuple(outcome.steps),
                         time.monotonic() - started)

    async def _finished_or_silent(self, session):  # type: ignore[no-untyped-def]
        """The session's outcome; ``RunnerSilent`` once the runner stops calling in (it died)."""
        finished = asyncio.ensure_future(session.wait_finished())
        try:
            while not finished.done():
                await asyncio.wait({finished}, timeout=HEARTBEAT)
                if not finished.done() and time.monotonic() - session.last_heartbeat > SILENT_AFTER:
                    raise RunnerSilent(f"the runner stopped calling in for {SILENT_AFTER:g}s (it died?)")
            return finished.result()
        finally:
            finished.cancel()

    @staticmethod
    async def _follow(request: jobs_pb2.JobRequest, joblog, reporter: Reporter) -> None:  # type: ignore[no-untyped-def]
        async for page in frame_pages(joblog.read_frames(1), 1):
            reporter.page(request, page)
