"""Authentication and roles for every AdminService call, as a gRPC server interceptor.

Each management listener has its own ``AdminAuth``: the token listeners (TCP
with TLS, and the socket for peers whose uid is not trusted) need a token;
the socket's trusted peers (root, the node's own user) are ``LOCAL_ADMIN``
unless they present a token, which then decides. The call then needs the
role ``METHOD_ROLES`` names for it; a method missing from that table is
refused to everyone, so a new RPC cannot be served unchecked.

    missing / invalid / expired / revoked token  ->  UNAUTHENTICATED
    a role below the method's                    ->  PERMISSION_DENIED

The servicer reads who is calling with ``current_principal()``.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping

import grpc

from common.errors import SolsticeError
from orchestrator.operators import OperatorTokens, Principal, Role, TokenRefused

log = logging.getLogger(__name__)

SERVICE = "solstice.v1.AdminService"
METHOD_ROLES: Mapping[str, Role] = {
    "Get": Role.READ, "List": Role.READ, "TailLogs": Role.READ, "Hosts": Role.READ,
    "ListArtifacts": Role.READ, "DownloadArtifact": Role.READ,
    "Submit": Role.OPERATE, "Cancel": Role.OPERATE, "Retry": Role.OPERATE,
    "Drain": Role.ADMIN, "CollectGarbage": Role.ADMIN, "CreateToken": Role.ADMIN, "ListTokens": Role.ADMIN, "RevokeToken": Role.ADMIN,
    # Secrets (docs/secrets.md): setting or removing one decides which credentials jobs
    # receive, like token management; listing and the audit show names, never values.
    "SetSecret": Role.ADMIN, "DeleteSecret": Role.ADMIN, "ListSecrets": Role.OPERATE, "SecretAudit": Role.OPERATE,
}
NO_TOKEN = "this call needs an operator token ('authorization: Bearer <token>')"

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("admin_principal", default=None)


def current_principal() -> Principal:
    """The operator of the AdminService call being served (set by ``AdminAuth``)."""
    principal = _principal.get()
    if principal is None:
        raise SolsticeError("no authenticated operator: the call did not pass through AdminAuth")
    return principal


def bearer(metadata) -> str | None:  # type: ignore[no-untyped-def]
    """The token of an ``authorization: Bearer <token>`` entry; "" for a malformed one, None for none."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value if isinstance(value, str) else value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class AdminAuth(grpc.aio.ServerInterceptor):
    """Authenticates every call of one listener; ``peer`` is who its callers are without a token."""

    def __init__(self, tokens: OperatorTokens, peer: Principal | None = None) -> None:
        self.tokens = tokens
        self.peer = peer

    async def authenticate(self, metadata) -> Principal:  # type: ignore[no-untyped-def]
        """Who is calling; ``TokenRefused`` when nobody is (the message says why)."""
        token = bearer(metadata)
        if token is None:
            if self.peer is None:
                raise TokenRefused(NO_TOKEN)
            return self.peer
        if not token:
            raise TokenRefused("the authorization metadata is not 'Bearer <token>'")
        return await self.tokens.verify(token)

    async def _admit(self, context: grpc.aio.ServicerContext, method: str) -> None:
        needed = METHOD_ROLES.get(method)
        try:
            principal = await self.authenticate(context.invocation_metadata())
        except TokenRefused as err:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
        except SolsticeError as err:  # the store cannot say: refuse, do not guess
            log.error("cannot check an operator token: %s", err)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "cannot check the token right now")
        if needed is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not open to any role")
        assert needed is not None
        if not principal.may(needed):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{method} needs the {needed.label} role; {principal.name!r} has "
                                f"{principal.role.label}")
        _principal.set(principal)

    async def intercept_service(self, continuation, details):  # type: ignore[no-untyped-def]
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").rpartition("/")
        if handler is None or service != SERVICE:
            return handler  # unknown methods end UNIMPLEMENTED as usual
        return _guarded(handler, lambda context: self._admit(context, method))


def _guarded(handler: grpc.RpcMethodHandler, admit: Callable[[grpc.aio.ServicerContext], Awaitable[None]]):  # type: ignore[no-untyped-def]
    """``handler`` with ``admit(context)`` run before its behaviour (AdminService has no client streams)."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request, context):  # type: ignore[no-untyped-def]
            await admit(context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer,
                                                   handler.response_serializer)
    if handler.unary_stream is not None:
        stream = handler.unary_stream

        async def streaming(request, context):  # type: ignore[no-untyped-def]
            await admit(context)
            async for item in stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(streaming, handler.request_deserializer,
                                                    handler.response_serializer)
    raise SolsticeError("AdminService has a client-streaming method that AdminAuth cannot guard")
