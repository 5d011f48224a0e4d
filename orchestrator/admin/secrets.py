"""AdminService's secret calls: set, list, delete, and the delivery audit.

A value enters with ``SetSecret`` and never leaves: no answer carries one,
nothing logs one. Errors are gRPC status codes with one-line messages:

    INVALID_ARGUMENT     a bad scope, name, ref pattern or value
    NOT_FOUND            DeleteSecret of a secret that is not set
    FAILED_PRECONDITION  the store is read-only (Vault), has no key, or the node has no store
    UNAVAILABLE          the store cannot be reached
"""

from __future__ import annotations

import logging

import grpc

from common.rpc import admin_pb2
from orchestrator.secrets import (
    Delivery,
    InvalidSecret,
    KeyringError,
    ReadOnlyStore,
    RefPatterns,
    Scope,
    SecretBroker,
    SecretError,
    SecretInfo,
    SecretNotFound,
)
from orchestrator.store import StoreError

log = logging.getLogger(__name__)
DEFAULT_AUDIT_LIMIT = 100

_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidSecret, grpc.StatusCode.INVALID_ARGUMENT),
    (SecretNotFound, grpc.StatusCode.NOT_FOUND),
    (ReadOnlyStore, grpc.StatusCode.FAILED_PRECONDITION),
    (KeyringError, grpc.StatusCode.FAILED_PRECONDITION),
    (SecretError, grpc.StatusCode.UNAVAILABLE),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)


def secret_info(info: SecretInfo, store: str) -> admin_pb2.SecretInfo:
    out = admin_pb2.SecretInfo(scope=str(info.scope), name=info.name, refs=list(info.refs.patterns), store=store,
                               key_id=info.key_id, version=info.version)
    if info.updated_at is not None:
        out.updated_at.FromDatetime(info.updated_at)
    return out


def delivery(record: Delivery) -> admin_pb2.SecretDelivery:
    out = admin_pb2.SecretDelivery(job_id=record.job_id, attempt=record.attempt, repo=record.repo, ref=record.ref,
                                   names=list(record.names), outcome=record.outcome, reason=record.reason,
                                   host=record.host, store=record.store)
    out.at.FromDatetime(record.at)
    return out


class SecretRpcs:
    """The secret RPCs, mixed into ``AdminServicer`` (which provides ``secrets``)."""

    secrets: SecretBroker | None

    async def _secret_call(self, context: grpc.aio.ServicerContext, coro):
        try:
            if self.secrets is None:
                raise ReadOnlyStore("this node has no secret store")
            return await coro
        except (SecretError, StoreError) as err:
            code = next(code for kind, code in _CODES if isinstance(err, kind))
            if code == grpc.StatusCode.UNAVAILABLE:
                log.error("secret request failed: %s", err)
            await context.abort(code, str(err).splitlines()[0])
        finally:
            coro.close()  # not awaited when refused first

    def _store(self):
        assert self.secrets is not None
        if self.secrets.store is None:
            raise ReadOnlyStore("this node has no secret store")
        return self.secrets.store

    async def SetSecret(self, request, context):
        async def go() -> admin_pb2.SecretInfo:
            store = self._store()
            info = await store.put(Scope.parse(request.scope), request.name, request.value,
                                   RefPatterns.parse(request.refs))
            return secret_info(info, store.name)
        return await self._secret_call(context, go())

    async def ListSecrets(self, request, context):
        async def go() -> admin_pb2.ListSecretsResponse:
            store = self._store()
            found = await store.list(Scope.parse(request.scope))
            return admin_pb2.ListSecretsResponse(secrets=[secret_info(i, store.name) for i in found], store=store.name)
        return await self._secret_call(context, go())

    async def DeleteSecret(self, request, context):
        async def go() -> admin_pb2.DeleteSecretResponse:
            await self._store().remove(Scope.parse(request.scope), request.name)
            return admin_pb2.DeleteSecretResponse()
        return await self._secret_call(context, go())

    async def SecretAudit(self, request, context):
        async def go() -> admin_pb2.SecretAuditResponse:
            assert self.secrets is not None
            if self.secrets.audit is None:
                raise ReadOnlyStore("this node keeps no secret audit trail")
            limit = request.limit or DEFAULT_AUDIT_LIMIT
            if not 0 < limit <= 1000:
                raise InvalidSecret("limit must be 1..1000")
            scope = Scope.parse(request.scope) if request.scope else None
            records = await self.secrets.audit.query(job_id=request.job_id, scope=scope, limit=limit)
            return admin_pb2.SecretAuditResponse(deliveries=[delivery(r) for r in records])
        return await self._secret_call(context, go())
