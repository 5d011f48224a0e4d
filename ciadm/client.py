"""``AdminClient``: AdminService over gRPC, with gRPC failures turned into one-line errors.

    async with AdminClient(resolve(settings)) as admin:       # or AdminClient("unix:/path/admin.sock")
        job = await admin.get("job-...")
        async for page in admin.tail_logs("job-...", follow=True): ...   # LogPage: runs of lines

A Unix socket is dialled as is; a TCP address with TLS (``Target.credentials``).
The target's token goes with every call as ``authorization: Bearer <token>``.

Errors (a ``SolsticeError`` each, so ``ciadm`` prints ``ERROR: ...``):

    AdminError
    ├── OrchestratorUnreachable   nothing answers at the address (or it timed out)
    ├── JobNotFound               NOT_FOUND: no such job, host or secret
    ├── NotAuthenticated          UNAUTHENTICATED: no token, or a bad one (with where to give one)
    ├── NotPermitted              PERMISSION_DENIED: the token's role is too low
    └── AdminRefused              any other status: the server's one-line message
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

import grpc

from common.errors import SolsticeError
from common.grpc_options import client_options
from ciadm.target import ENV_ORCHESTRATOR, Target, config_path, grpc_target
from common.rpc import admin_pb2, admin_pb2_grpc, jobs_pb2

# A log stream that broke this way is asked again from where it stopped.
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
RESUMES = 5  # times in a row without a line between
RESUME_BACKOFF = 0.2
STALL_FLOOR = 15.0  # never call a stream stalled sooner: the server's keepalive comes every 5 s
TOKEN_HINT = "give a token with --token, $SOLSTICE_TOKEN or 'token:' in {config}"


class AdminError(SolsticeError):
    """An AdminService call failed; the message says why in one line."""


class OrchestratorUnreachable(AdminError):
    """Nothing answered at the orchestrator's address in time."""


class JobNotFound(AdminError):
    """The orchestrator knows no such job (or host)."""


class AdminRefused(AdminError):
    """The orchestrator refused the request (bad argument, wrong state, ...)."""


class NotAuthenticated(AdminRefused):
    """The orchestrator does not know who is calling: no token, or one it refuses."""


class NotPermitted(AdminRefused):
    """The caller's role does not allow the call."""


def _translate(err: grpc.aio.AioRpcError, address: str) -> AdminError:
    code = err.code()
    detail = (err.details() or code.name.lower()).strip().splitlines()[0] if err.details() else code.name.lower()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        why = "no answer in time" if code == grpc.StatusCode.DEADLINE_EXCEEDED else detail
        if "connection refused" in why.lower():
            why = "connection refused"
        elif "handshake" in why.lower():
            why = ("the TLS handshake failed: is it the admin TLS listener (not the runners' gRPC address), "
                   "and is its certificate trusted (--tls-ca)?")
        return OrchestratorUnreachable(
            f"cannot reach the orchestrator at {address} ({why}); is it running? "
            f"(set --orchestrator or ${ENV_ORCHESTRATOR})"
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return JobNotFound(detail)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return NotAuthenticated(f"{detail} ({TOKEN_HINT.format(config=config_path())})")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return NotPermitted(f"{detail} (ask an admin for a token with that role: "
                            "ciadm token create --name NAME --role ROLE)")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return AdminRefused(f"the server at {address} does not serve AdminService ({detail})")
    return AdminRefused(detail)


class AdminClient:
    """An AdminService connection; ``timeout`` bounds every unary call (not a followed log).

    ``target`` is a resolved ``Target``, or an address (socket path, ``unix:PATH``,
    ``HOST:PORT``) to dial without a token.
    """

    def __init__(self, target: Target | str, timeout: float = 10.0) -> None:
        self.target = target if isinstance(target, Target) else Target(*grpc_target(target))
        self.address = self.target.address
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {self.target.token}"),) if self.target.token else ()
        self._channel: grpc.aio.Channel | None = None
        self._stub: admin_pb2_grpc.AdminServiceStub | None = None

    async def __aenter__(self) -> AdminClient:
        if self.target.unix:
            self._channel = grpc.aio.insecure_channel(self.address, options=client_options())
        else:
            self._channel = grpc.aio.secure_channel(self.address, self.target.credentials(), options=client_options())
        self._stub = admin_pb2_grpc.AdminServiceStub(self._channel)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    @property
    def stub(self) -> admin_pb2_grpc.AdminServiceStub:
        if self._stub is None:
            raise AdminError("the admin client is not open")
        return self._stub

    async def _call(self, method, request):  # type: ignore[no-untyped-def]
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise _translate(err, self.address) from None

    async def submit(self, jobs: Sequence[jobs_pb2.JobRequest]) -> list[admin_pb2.JobInfo]:
        reply = await self._call(self.stub.Submit, admin_pb2.SubmitRequest(jobs=list(jobs)))
        return list(reply.jobs)

    async def get(self, job_id: str) -> admin_pb2.JobInfo:
        return await self._call(self.stub.Get, admin_pb2.GetJobRequest(job_id=job_id))

    async def list(self, request: admin_pb2.ListJobsRequest) -> list[admin_pb2.JobInfo]:
        return list((await self._call(self.stub.List, request)).jobs)

    async def cancel(self, job_id: str, reason: str = "") -> admin_pb2.JobInfo:
        return await self._call(self.stub.Cancel, admin_pb2.CancelRequest(job_id=job_id, reason=reason))

    async def retry(self, job_id: str) -> admin_pb2.JobInfo:
        return await self._call(self.stub.Retry, admin_pb2.RetryRequest(job_id=job_id))

    async def list_artifacts(self, job_id: str, attempt: int = 0) -> list[jobs_pb2.ArtifactInfo]:
        request = admin_pb2.ListArtifactsRequest(job_id=job_id, attempt=attempt)
        return list((await self._call(self.stub.ListArtifacts, request)).artifacts)

    async def download_artifact(self, job_id: str, name: str, attempt: int = 0) -> AsyncIterator[jobs_pb2.ArtifactChunk]:
        """The artifact's chunks as they arrive (no overall deadline: artifacts may be large)."""
        request = admin_pb2.DownloadArtifactRequest(job_id=job_id, attempt=attempt, name=name)
        try:
            async for chunk in self.stub.DownloadArtifact(request, metadata=self._metadata):
                yield chunk
        except grpc.aio.AioRpcError as err:
            raise _translate(err, self.address) from None

    async def hosts(self) -> list[admin_pb2.HostInfo]:
        return list((await self._call(self.stub.Hosts, admin_pb2.HostsRequest())).hosts)

    async def drain(self, host: str, undrain: bool = False) -> admin_pb2.HostInfo:
        return await self._call(self.stub.Drain, admin_pb2.DrainRequest(host=host, undrain=undrain))

    async def set_secret(self, scope: str, name: str, value: str, refs: Sequence[str] = ()) -> admin_pb2.SecretInfo:
        request = admin_pb2.SetSecretRequest(scope=scope, name=name, value=value, refs=list(refs))
        return await self._call(self.stub.SetSecret, request)

    async def list_secrets(self, scope: str) -> admin_pb2.ListSecretsResponse:
        return await self._call(self.stub.ListSecrets, admin_pb2.ListSecretsRequest(scope=scope))

    async def delete_secret(self, scope: str, name: str) -> None:
        await self._call(self.stub.DeleteSecret, admin_pb2.DeleteSecretRequest(scope=scope, name=name))

    async def secret_audit(self, job_id: str = "", scope: str = "", limit: int = 0) -> list[admin_pb2.SecretDelivery]:
        request = admin_pb2.SecretAuditRequest(job_id=job_id, scope=scope, limit=limit)
        return list((await self._call(self.stub.SecretAudit, request)).deliveries)

    async def create_token(self, name: str, role: admin_pb2.OperatorRole.ValueType,
                           expires_in: float = 0.0) -> admin_pb2.CreateTokenResponse:
        return await self._call(self.stub.CreateToken, admin_pb2.CreateTokenRequest(
            name=name, role=role, expires_in_seconds=expires_in))

    async def list_tokens(self) -> list[admin_pb2.TokenInfo]:
        return list((await self._call(self.stub.ListTokens, admin_pb2.ListTokensRequest())).tokens)

    async def revoke_token(self, name: str) -> admin_pb2.TokenInfo:
        return await self._call(self.stub.RevokeToken, admin_pb2.RevokeTokenRequest(name=name))

    async def collect_garbage(self, dry_run: bool, older_than: float = 0.0) -> admin_pb2.GarbageReport:
        request = admin_pb2.GarbageRequest(dry_run=dry_run, older_than_seconds=older_than)
        return await self._call(self.stub.CollectGarbage, request)

    async def tail_logs(self, job_id: str, follow: bool = False, from_sequence: int = 1,
                        attempt: int = 0) -> AsyncIterator[admin_pb2.LogPage]:
        """The log's pages from ``from_sequence``; with ``follow``, live ones until the log ends
        (and a ``keepalive`` page whenever nothing happened for a few seconds).

        No deadline bounds the read: it may take long (a big log, a job running for
        hours). What bounds it is progress: a stream with no page - not even the
        keepalive the server sends while nothing happens - for ``self.timeout``
        seconds is stalled. A stalled or dropped stream is asked again from the
        sequence after the last line received (up to ``RESUMES`` times in a row
        without a line between), so nothing is missed and nothing printed twice.
        """
        request = admin_pb2.TailLogsRequest(job_id=job_id, follow=follow, from_sequence=from_sequence,
                                            attempt=attempt)
        failures = 0
        while True:
            call = self.stub.TailLogs(request, metadata=self._metadata)
            try:
                while True:
                    try:
                        page = await asyncio.wait_for(call.read(), max(self.timeout, STALL_FLOOR))
                    except TimeoutError:
                        raise _Stalled() from None
                    if page is grpc.aio.EOF:
                        return
                    if page.attempt:
                        request.attempt = page.attempt  # a resume reads the same attempt
                    if page.runs:
                        request.from_sequence = page.first_sequence + sum(run.lines for run in page.runs)
                        failures = 0
                    yield page
                    if page.end:
                        return
            except (_Stalled, grpc.aio.AioRpcError) as err:
                resumable = isinstance(err, _Stalled) or err.code() in RESUMABLE
                failures += 1
                if not resumable or failures > RESUMES:
                    if isinstance(err, _Stalled):
                        raise OrchestratorUnreachable(
                            f"the log stream from {self.address} stalled (nothing for "
                            f"{max(self.timeout, STALL_FLOOR):g}s, {failures} times)") from None
                    raise _translate(err, self.address) from None
                await asyncio.sleep(min(RESUME_BACKOFF * failures, 2.0))
            finally:
                call.cancel()


class _Stalled(Exception):
    """No page within the stall limit."""
