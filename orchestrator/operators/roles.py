"""Who an operator is (``Principal``) and what their ``Role`` lets them do.

Roles are ordered: each includes the one below it.

    read      look: List, Get, TailLogs, Hosts (the dashboard's viewers)
    operate   read + act on jobs: Submit, Cancel, Retry
    admin     operate + act on the cluster: Drain, and operator tokens
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import cast

from common.rpc import admin_pb2


class Role(enum.IntEnum):
    """An operator's role; a larger value includes every smaller one."""

    READ = 1
    OPERATE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """``read`` / ``operate`` / ``admin``: the name tokens are created and stored with."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: choose read, operate or admin") from None

    def to_proto(self) -> admin_pb2.OperatorRole:
        # The stubs type Value() as a plain int.
        return cast(admin_pb2.OperatorRole, admin_pb2.OperatorRole.Value(f"OPERATOR_ROLE_{self.name}"))

    @classmethod
    def from_proto(cls, value: int) -> Role:
        if value == admin_pb2.OPERATOR_ROLE_UNSPECIFIED:
            raise ValueError("a role is needed: read, operate or admin")
        return cls(value)


ROLE_NAMES = tuple(role.label for role in Role)


@dataclass(frozen=True)
class Principal:
    """An authenticated operator: a token's name and role, or the local socket's owner.

    ``token_id`` is the public id of the token used ("" for a peer-uid login on the socket).
    """

    name: str
    role: Role
    token_id: str = ""

    def may(self, needed: Role) -> bool:
        return self.role >= needed


# Root and the node's own user on the local socket (their uid stands in for a token).
LOCAL_ADMIN = Principal("local", Role.ADMIN)
