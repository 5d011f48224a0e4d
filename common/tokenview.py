"""How operator tokens are shown (``admin_pb2.TokenInfo``), by ``ciadm token`` and the servers' ``token`` commands."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from common.rpc import admin_pb2
from common.tables import iso_time as _time
from common.tables import table


def role_name(value: int) -> str:
    return admin_pb2.OperatorRole.Name(value).removeprefix("OPERATOR_ROLE_").lower()


def token_state(info: admin_pb2.TokenInfo, now: datetime | None = None) -> str:
    """``live``, ``expired`` or ``revoked``."""
    if info.HasField("revoked_at"):
        return "revoked"
    if info.HasField("expires_at") and info.expires_at.ToDatetime(tzinfo=UTC) <= (
            now or datetime.now(UTC)):
        return "expired"
    return "live"


def token_json(info: admin_pb2.TokenInfo) -> dict[str, Any]:
    return {"token_id": info.token_id, "name": info.name, "role": role_name(info.role), "state": token_state(info),
            "created_at": _time(info.created_at), "expires_at": _time(info.expires_at),
            "revoked_at": _time(info.revoked_at)}


def tokens_table(tokens: Sequence[admin_pb2.TokenInfo]) -> list[str]:
    rows = [("NAME", "ROLE", "STATE", "ID", "CREATED", "EXPIRES")]
    for info in tokens:
        rows.append((info.name, role_name(info.role), token_state(info), info.token_id,
                     _time(info.created_at) or "-", _time(info.expires_at) or "never"))
    return table(rows)


def created_note(info: admin_pb2.TokenInfo) -> str:
    """The line (for stderr) that goes with a new token printed once on stdout."""
    expires = _time(info.expires_at) or "never"
    return (f"token {info.name!r} (role {role_name(info.role)}, id {info.token_id}, expires {expires}) - "
            "shown once: store it now (SOLSTICE_TOKEN, --token or 'token:' in ~/.config/solstice/ciadm.yaml)")
