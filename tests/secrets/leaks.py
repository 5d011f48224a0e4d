"""Looking for a secret value where it must never be: a database, files, broker messages."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from orchestrator.secrets.open import sql_backend
from orchestrator.store import Store


def forms(value: str) -> list[bytes]:
    """The value as a person could recognise it: plain, base64, URL-encoded, hex."""
    raw = value.encode()
    return [raw, base64.b64encode(raw), urllib.parse.quote(value, safe="").encode(), raw.hex().encode()]


async def dump(state: Store) -> bytes:
    """Every cell of every table, as bytes: what a database dump would show."""
    backend = sql_backend(state)
    if backend.dialect == "sqlite":
        tables = [r["name"] for r in await backend.run("SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        tables = [r["tablename"] for r in await backend.run(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    out = b""
    for table in tables:
        for row in await backend.run(f"SELECT * FROM {table}"):
            out += b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in tuple(row)) + b"\n"
    return out


def file_bytes(root: Path) -> dict[Path, bytes]:
    """Every regular file under ``root`` (SQLite WAL files, logs, spools, consoles ...)."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leaks(value: str, places: Iterable[tuple[str, bytes]]) -> list[str]:
    """The places (names) holding any form of ``value``."""
    found = forms(value)
    return [name for name, data in places if any(form in data for form in found)]
