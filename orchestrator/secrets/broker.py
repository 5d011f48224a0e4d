"""``SecretBroker``: what a node asks for a job attempt's secrets, and where deliveries are recorded.

    granted = await broker.resolve(request, job_id, attempt)    # before the VM is prepared
    ... AssignedJob(..., secrets=granted.values), on_delivery=granted.delivered
    # RunnerService.GetJob: `await granted.delivered()` (the audit row), then the values go out

``resolve`` raises ``SecretsRefused`` (the job ends ``failed`` with its
reason: the user's workflow or the repository's settings are at fault) or
``SecretError`` (the store failed: the job ends ``errored``). A job that
declares no secret costs nothing: no store and no audit call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from common.errors import SolsticeError
from common.log import masker
from common.logbatch import secret_values
from common.rpc import jobs_pb2
from orchestrator.secrets import policy
from orchestrator.secrets.audit import DELIVERED, REFUSED, AuditLog
from orchestrator.secrets.base import SecretStore
from orchestrator.secrets.model import Scope

log = logging.getLogger(__name__)


class SecretsRefused(SolsticeError):
    """The job may not have (some of) the secrets it declares; the message says which and why."""


@dataclass(frozen=True)
class Granted:
    """The secret values of one job attempt, and how to record that they were handed out."""

    broker: SecretBroker | None
    job_id: str
    attempt: int
    request: jobs_pb2.JobRequest
    values: Mapping[str, str] = field(default_factory=dict, repr=False)

    async def delivered(self) -> None:
        """Record the delivery (call before the values leave); a store error propagates."""
        if self.broker is not None and self.values:
            await self.broker.record(self.request, self.job_id, self.attempt, DELIVERED)


class SecretBroker:
    """The node's secret store, the delivery rules (``policy``) and the audit trail together."""

    def __init__(self, store: SecretStore | None, audit: AuditLog | None, host: str,
                 timeout: float = 30.0) -> None:
        self.store = store
        self.audit = audit
        self.host = host
        self.timeout = timeout  # a lookup's deadline (the attempt's "resolving secrets" phase)

    @property
    def store_name(self) -> str:
        return self.store.name if self.store is not None else "none"

    async def resolve(self, request: jobs_pb2.JobRequest, job_id: str, attempt: int) -> Granted:
        if not request.secrets:
            return Granted(None, job_id, attempt, request)
        scope = policy.before_lookup(request, has_store=self.store is not None)
        if isinstance(scope, policy.Refusal):
            await self._refuse(request, job_id, attempt, scope.reason)
        assert self.store is not None  # before_lookup refuses otherwise
        found = await self.store.fetch(scope, list(request.secrets))
        values = policy.after_lookup(request, scope, found)
        if isinstance(values, policy.Refusal):
            await self._refuse(request, job_id, attempt, values.reason)
        # The node never logs a value; should a message ever carry one, it is masked.
        masker.add(*secret_values(values.values()))
        return Granted(self, job_id, attempt, request, values)

    async def _refuse(self, request: jobs_pb2.JobRequest, job_id: str, attempt: int, reason: str) -> NoReturn:
        log.info("secrets refused: %s", reason, extra={"fields": {"job": job_id, "attempt": attempt}})
        await self.record(request, job_id, attempt, REFUSED, reason)
        raise SecretsRefused(reason)

    async def record(self, request: jobs_pb2.JobRequest, job_id: str, attempt: int, outcome: str,
                     reason: str = "") -> None:
        if self.audit is None:
            return
        scope = Scope.of_checkout(request.checkout)
        await self.audit.record(job_id=job_id, attempt=attempt, repo=str(scope) if scope else request.checkout.repo,
                                ref=request.checkout.ref, names=list(request.secrets), outcome=outcome,
                                host=self.host, store=self.store_name, reason=reason)
