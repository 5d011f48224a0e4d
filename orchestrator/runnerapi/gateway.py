"""The state shared by the RunnerService servicer and the scheduler.

The scheduler ``assign``s a job attempt (getting the session and its token
to hand to the VM), waits on ``session.wait_finished()``, may ``cancel`` it,
and always ``release``s it when the VM is gone. The servicer looks sessions
up by the claims of the token a runner presents.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.artifacts import ArtifactLimits
from common.errors import SolsticeError
from common.rpc import jobs_pb2
from common.tokens import TokenClaims, TokenIssuer
from orchestrator.artifacts.store import ArtifactSource, ArtifactStore
from orchestrator.caches.dirstore import DirectoryCaches
from orchestrator.logstore import JobLog, LogStore

log = logging.getLogger(__name__)

DEFAULT_SHELL = ("bash", "-eo", "pipefail", "-c")
TERMINAL = frozenset(
    {
        jobs_pb2.JOB_STATE_SUCCEEDED,
        jobs_pb2.JOB_STATE_FAILED,
        jobs_pb2.JOB_STATE_CANCELLED,
        jobs_pb2.JOB_STATE_ERRORED,
    }
)

StepCallback = Callable[[jobs_pb2.StepResult], Awaitable[None]]
DeliveryCallback = Callable[[], Awaitable[None]]


class GatewayError(SolsticeError):
    """The scheduler asked something the gateway cannot do."""


@dataclass(frozen=True)
class AssignedJob:
    """One job attempt handed to a VM, with everything its runner will be told."""

    job_id: str
    attempt: int
    request: jobs_pb2.JobRequest
    secrets: Mapping[str, str] = field(default_factory=dict)  # values by name; sent only if trusted
    timeout_seconds: float = 3600.0
    shell: tuple[str, ...] = DEFAULT_SHELL
    kill_grace_seconds: float = 10.0
    clone_userinfo: str = ""  # the clone URL's user:password, kept apart from the request (Store.clone_credentials)
    log_limit_bytes: int = 0  # output bytes the runner may ship; 0 = no limit
    log_limit_fails: bool = False  # past the limit the job fails instead of going on unlogged
    artifact_inputs: tuple[ArtifactSource, ...] = ()  # attempts of the needed jobs, whose artifacts it gets

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        return f"AssignedJob(job_id={self.job_id!r}, attempt={self.attempt}, secrets=***)"

    def masked(self) -> list[str]:
        """Values no stored log line may show: the secrets handed out, the clone password."""
        values = list(self.secrets.values())
        if self.clone_userinfo:
            values.append(urllib.parse.unquote(self.clone_userinfo.partition(":")[2]) or self.clone_userinfo)
        return values


@dataclass(frozen=True)
class JobOutcome:
    """How a job attempt ended, as its runner (or the gateway) reported it."""

    state: jobs_pb2.JobState.ValueType
    steps: list[jobs_pb2.StepResult]
    reason: str
    log_tail: list[str]


class RunnerSession:
    """One assigned job attempt, from ``assign`` to ``release``."""

    def __init__(self, job: AssignedJob, token: str, on_step: StepCallback | None,
                 on_delivery: DeliveryCallback | None = None) -> None:
        self.job = job
        self.token = token
        self.on_step = on_step
        self.on_delivery = on_delivery  # records the secrets' delivery (audit) before they leave
        self.connected = asyncio.Event()  # set by the first authenticated call
        self.last_heartbeat = 0.0  # time.monotonic() of the last call of any kind
        self.logged_bytes = 0  # output bytes received (counted against job.log_limit_bytes)
        self.log_streams = 0  # StreamLogs calls (more than one: the runner reconnected)
        self.cancel_reason: str | None = None
        self.refused: str | None = None  # why the runner was turned away (its version), if it was
        self.steps: dict[int, jobs_pb2.StepResult] = {}
        self._outcome: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self._log: JobLog | None = None
        self._log_lock = asyncio.Lock()
        self._logstore: LogStore | None = None

    def __repr__(self) -> str:
        return f"RunnerSession(job:{self.job.job_id}#{self.job.attempt}, token=***)"

    @property
    def finished(self) -> bool:
        return self._outcome.done()

    async def wait_finished(self) -> JobOutcome:
        """The outcome, once the runner completed (or the session was released)."""
        return await asyncio.shield(self._outcome)

    def touch(self) -> None:
        self.last_heartbeat = time.monotonic()
        self.connected.set()

    async def log(self) -> JobLog:
        """The job attempt's log (opened on first use, with the job's secrets)."""
        async with self._log_lock:
            if self._log is None:
                assert self._logstore is not None
                self._log = await self._logstore.open(self.job.job_id, self.job.attempt, self.job.masked())
            return self._log

    async def _close_log(self) -> list[str]:
        """Close the attempt's log; its last lines."""
        async with self._log_lock:
            if self._log is None:
                assert self._logstore is not None
                if not await self._logstore.exists(self.job.job_id, self.job.attempt):
                    return []  # nothing was logged: no log is stored (readers show it empty)
        joblog = await self.log()
        await joblog.close()
        return joblog.tail()

    async def secrets_for_runner(self) -> Mapping[str, str]:
        """The values GetJob sends: none unless the job is trusted; their delivery is
        recorded first (``on_delivery``), and an error recording it propagates."""
        if not self.job.request.trusted or not self.job.secrets:
            return {}
        if self.on_delivery is not None:
            await self.on_delivery()
        return self.job.secrets

    async def record_step(self, result: jobs_pb2.StepResult) -> None:
        self.steps[result.index] = result
        if self.on_step is not None:
            try:
                await self.on_step(result)
            except Exception:  # the scheduler's bug must not fail the runner's call
                log.exception("step callback failed", extra={"fields": {"job": self.job.job_id}})

    async def refuse(self, reason: str) -> None:
        """The runner cannot run this job (``reason``): the attempt ends errored before it starts."""
        if self.refused is None and not self.finished:
            self.refused = reason
        await self.finish(jobs_pb2.JOB_STATE_ERRORED, reason)

    async def finish(self, state: jobs_pb2.JobState.ValueType, reason: str,
                     steps: list[jobs_pb2.StepResult] | None = None) -> JobOutcome:
        """Close the log and settle the outcome; later calls return the first outcome."""
        if self._outcome.done():
            return self._outcome.result()
        tail = await self._close_log()
        if self._outcome.done():  # settled while the log was closing
            return self._outcome.result()
        if steps:
            for step in steps:
                self.steps[step.index] = step
        outcome = JobOutcome(
            state=state,
            steps=[self.steps[i] for i in sorted(self.steps)],
            reason=reason,
            log_tail=tail,
        )
        self._outcome.set_result(outcome)
        return outcome


class RunnerGateway:
    """Sessions of the job attempts assigned on this node, keyed by (job id, attempt)."""

    def __init__(
        self,
        logstore: LogStore,
        issuer: TokenIssuer,
        *,
        heartbeat_interval: float = 2.0,
        runner_patience: float = 60.0,
        artifact_limits: ArtifactLimits = ArtifactLimits(),
        caches: DirectoryCaches | None = None,
        cache_max_bytes: int = 0,
    ) -> None:
        self.logstore = logstore
        # Caches: files over the runner channel ("copy": local, qemu) or the VM's cache disks
        # ("disk": bhyve, set with ``disk_caches``); "" keeps none (jobs run without their caches).
        self.caches = caches
        self.cache_max_bytes = cache_max_bytes
        self.disk_caches: Any = None
        self.artifacts = ArtifactStore(logstore.root)  # beside the logs: retention takes both
        self.artifact_limits = artifact_limits
        self.issuer = issuer
        self.heartbeat_interval = heartbeat_interval
        # How long the node waits for a silent runner (its timeouts.runner_silence; the Node sets it).
        self.runner_patience = runner_patience
        self._sessions: dict[tuple[str, int], RunnerSession] = {}
        self._issued: dict[str, TokenClaims] = {}  # token of each assigned session -> its claims

    def cache_mode(self, job_id: str, attempt: int) -> str:
        """How the attempt's caches travel: "disk" (its VM has cache disks), "copy" or "" (none kept)."""
        if self.disk_caches is not None and self.disk_caches.knows(job_id, attempt):
            return "disk"
        return "copy" if self.caches is not None else ""

    @property
    def runner_offline_limit(self) -> float:
        """How long a runner may try to reach the node before it gives up (GetJob hands it out):
        the node's patience less a margin for the calls in flight, so a reconnect within it
        always finds the job - the runner's clock starts at its last answered call, the node's
        at the last call it received, which is never later."""
        return self.runner_patience - min(5.0, self.runner_patience * 0.25)

    def assign(self, job: AssignedJob, on_step: StepCallback | None = None,
               on_delivery: DeliveryCallback | None = None, token_ttl: float = 0.0) -> RunnerSession:
        """Start a session for ``job``; its ``token`` goes to the VM. Must run on the loop.

        ``on_delivery`` is awaited each time GetJob is about to hand out the job's secrets.
        The token lives ``token_ttl`` seconds, or the issuer's lifetime if that is longer."""
        key = (job.job_id, job.attempt)
        if key in self._sessions:
            raise GatewayError(f"job {job.job_id} attempt {job.attempt} is already assigned")
        self.logstore.path(job.job_id, job.attempt)  # refuse ids that cannot name a log
        now = time.time()
        ttl = max(self.issuer.ttl_seconds, token_ttl)
        session = RunnerSession(job, self.issuer.issue(job.job_id, job.attempt, now, ttl=ttl), on_step, on_delivery)
        session._logstore = self.logstore
        self._sessions[key] = session
        self._issued[session.token] = TokenClaims(job.job_id, job.attempt, now + ttl)
        return session

    def verify(self, token: str) -> TokenClaims:
        """``TokenIssuer.verify``, without redoing the signature check for a token this gateway
        issued to a session still assigned (the same string, so the same claims); every runner
        call presents one, and the JWT check was the runner API's largest CPU cost. Expiry still
        applies. The lookup hashes the token with the process's secret SipHash key, so its timing
        says nothing useful about a forged token."""
        claims = self._issued.get(token)
        if claims is not None and time.time() < claims.expires_at:
            return claims
        return self.issuer.verify(token)

    def session(self, job_id: str, attempt: int) -> RunnerSession | None:
        return self._sessions.get((job_id, attempt))

    def cancel(self, job_id: str, attempt: int, reason: str) -> None:
        """Ask the runner to stop: its next heartbeat reply carries ``reason``."""
        session = self._sessions.get((job_id, attempt))
        if session is None:
            raise GatewayError(f"job {job_id} attempt {attempt} is not assigned here")
        if session.cancel_reason is None:
            session.cancel_reason = reason or "cancelled"

    async def release(self, job_id: str, attempt: int, reason: str = "the VM went away") -> JobOutcome | None:
        """Forget the attempt; its token stops working. An unfinished attempt
        ends ``errored`` with ``reason`` and its log is closed. Idempotent."""
        session = self._sessions.pop((job_id, attempt), None)
        if session is None:
            return None
        self._issued.pop(session.token, None)
        return await session.finish(jobs_pb2.JOB_STATE_ERRORED, reason)
