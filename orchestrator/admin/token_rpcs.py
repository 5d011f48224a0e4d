"""AdminService's operator-token calls (admin role): CreateToken, ListTokens, RevokeToken.

Mixed into ``AdminServicer``, which provides ``tokens`` and ``_call``. The token
text leaves the server once, in ``CreateTokenResponse``.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from common.rpc import admin_pb2
from orchestrator.operators import OperatorTokenError, OperatorTokens, Role
from orchestrator.store import OperatorTokenRecord


def token_info(record: OperatorTokenRecord) -> admin_pb2.TokenInfo:
    info = admin_pb2.TokenInfo(token_id=record.token_id, name=record.name, role=Role.parse(record.role).to_proto())
    info.created_at.FromDatetime(record.created_at)
    for target, value in ((info.expires_at, record.expires_at), (info.revoked_at, record.revoked_at)):
        if value is not None:
            stamp = Timestamp()
            stamp.FromDatetime(value)
            target.CopyFrom(stamp)
    return info


class TokenRpcs:
    """The token methods of ``AdminServicer``."""

    tokens: OperatorTokens

    async def _call(self, context, coro): ...  # provided by AdminServicer

    async def CreateToken(self, request, context):
        async def go() -> admin_pb2.CreateTokenResponse:
            try:
                role = Role.from_proto(request.role)
            except ValueError as err:
                raise OperatorTokenError(str(err)) from None
            if request.expires_in_seconds < 0:
                raise OperatorTokenError("expires_in_seconds cannot be negative")
            text, record = await self.tokens.create(request.name, role, request.expires_in_seconds or None)
            return admin_pb2.CreateTokenResponse(info=token_info(record), token=text)
        return await self._call(context, go())

    async def ListTokens(self, request, context):
        async def go() -> admin_pb2.ListTokensResponse:
            return admin_pb2.ListTokensResponse(tokens=[token_info(r) for r in await self.tokens.list()])
        return await self._call(context, go())

    async def RevokeToken(self, request, context):
        async def go() -> admin_pb2.TokenInfo:
            return token_info(await self.tokens.revoke(request.name))
        return await self._call(context, go())
