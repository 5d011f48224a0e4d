"""The runner's channel home: token on every call, retries, and the offline clock.

Transient failures (orchestrator restarting, network gone) are retried with
capped exponential backoff and jitter. The connection remembers when a call
last got through; once nothing has for ``offline_limit`` it is ``gone`` and
calls raise OrchestratorGone. A refusal (bad token, job not assigned) is
final. The limit is the orchestrator's own: GetJob hands it out (its node's
patience with a silent runner, less a margin), so the runner never keeps
working for a job its node already gave up; ``offline_limit`` given here
only applies until then.

Errors::

    SolsticeError
    └── ConnectionError_
        ├── Refused           UNAUTHENTICATED / PERMISSION_DENIED / INVALID_ARGUMENT,
        │                     and FAILED_PRECONDITION on GetJob (a runner version it does not speak)
        └── OrchestratorGone  unreachable for longer than the offline limit
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc

from common.backoff import Backoff
from common.bootstrap import RunnerBootstrap
from common.errors import SolsticeError
from common.grpc_options import client_options
from common.rpc import runner_pb2, runner_pb2_grpc
from common.version import IMAGE_FILE

log = logging.getLogger(__name__)
T = TypeVar("T")

FINAL = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNIMPLEMENTED,
}


class ConnectionError_(SolsticeError):  # noqa: N801 -- the builtin name is taken
    """Talking to the orchestrator failed."""


class Refused(ConnectionError_):
    """The orchestrator refused the call for good (token or request)."""


class OrchestratorGone(ConnectionError_):
    """The orchestrator has been unreachable for longer than the offline limit."""


class Connection:
    """One channel to the orchestrator for one job attempt."""

    def __init__(self, boot: RunnerBootstrap, offline_limit: float, backoff_initial: float = 0.1,
                 backoff_max: float = 5.0, rpc_timeout: float = 15.0) -> None:
        self.boot = boot
        self.offline_limit = offline_limit
        self.rpc_timeout = rpc_timeout
        self._backoff = (backoff_initial, backoff_max)
        self.channel = grpc.aio.insecure_channel(boot.orchestrator, options=client_options())
        self.stub = runner_pb2_grpc.RunnerServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {boot.token}"),)
        self._offline_since: float | None = None
        self._last_reached = time.monotonic()  # the node's silence clock starts at our last call it answered
        self.job = runner_pb2.JobRef()
        # Log batches leave the spool already serialized: skip a parse/serialize round.
        self.stream_logs = self.channel.stream_stream(
            "/solstice.v1.RunnerService/StreamLogs",
            request_serializer=lambda raw: raw,
            response_deserializer=runner_pb2.LogAck.FromString,
        )

    def backoff(self) -> Backoff:
        return Backoff(*self._backoff)

    # -- the offline clock ----------------------------------------------------

    def reached(self) -> None:
        """A call got through."""
        if self._offline_since is not None:
            log.info("orchestrator reachable again")
        self._offline_since = None
        self._last_reached = time.monotonic()

    def missed(self, err: BaseException) -> None:
        """A call failed for a transient reason."""
        if self._offline_since is None:
            log.warning("orchestrator unreachable, retrying: %s", _describe(err))
            # Counted from the last answer, as the node counts its silence from our last call.
            self._offline_since = self._last_reached

    @property
    def gone(self) -> bool:
        since = self._offline_since
        return since is not None and time.monotonic() - since > self.offline_limit

    def check_final(self, err: grpc.aio.AioRpcError) -> None:
        if err.code() in FINAL:
            raise Refused(f"the orchestrator refused the call: {err.details()}") from err

    # -- unary calls ----------------------------------------------------------

    async def call(self, name: str, fn: Callable[[], Awaitable[T]],
                   retry_while: Callable[[], bool] = lambda: True) -> T:
        """Run the unary call ``fn`` until it succeeds, is refused, or the
        orchestrator is gone (``retry_while`` returning False also stops)."""
        backoff = self.backoff()
        while True:
            try:
                result = await fn()
            except grpc.aio.AioRpcError as err:
                self.check_final(err)
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                self.missed(err)
            else:
                self.reached()
                return result
            if self.gone or not retry_while():
                raise OrchestratorGone(
                    f"{name}: the orchestrator at {self.boot.orchestrator} has been unreachable "
                    f"for more than {self.offline_limit:g}s"
                )
            await asyncio.sleep(backoff.next_delay())

    async def get_job(self, hostname: str, version: str, image_file: Path = Path(IMAGE_FILE)) -> runner_pb2.RunnerJob:
        """The job; announces this runner's ``version`` and the image it was built into."""
        req = runner_pb2.GetRunnerJobRequest(hostname=hostname, runner_version=version, image=read_image(image_file))
        # The token names the job; the request must name the same one.
        claims = _unverified_claims(self.boot.token)
        req.job.job_id, req.job.attempt = claims
        try:
            job: runner_pb2.RunnerJob = await self.call(
                "GetJob", lambda: self.stub.GetJob(req, metadata=self.metadata, timeout=self.rpc_timeout))
        except grpc.aio.AioRpcError as err:
            # FAILED_PRECONDITION here: the orchestrator does not speak this runner's version.
            raise Refused(f"the orchestrator refused this runner: {err.details()}") from err
        self.job.CopyFrom(job.job)
        if job.offline_limit_seconds > 0:
            self.offline_limit = job.offline_limit_seconds
        return job

    async def close(self) -> None:
        await self.channel.close()


def read_image(path: Path) -> str:
    """The ``name@version`` that ``solstice-image build`` wrote into the guest, or ``""``."""
    try:
        return path.read_text(errors="replace").strip()[:200]
    except OSError:
        return ""


def _unverified_claims(token: str) -> tuple[str, int]:
    """The job attempt a token names. The runner cannot verify the signature
    (it lacks the key) and need not: the orchestrator does on every call."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return str(claims["sub"]), int(claims["att"])
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError) as err:
        raise Refused("the job token is malformed: it names no job attempt") from err


def _describe(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    return str(err) or type(err).__name__
