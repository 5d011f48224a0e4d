"""The built-in secret store: values sealed with the node's keyring, in the state store.

Rows live in the ``secrets`` table (migration 005) of the same SQLite or
PostgreSQL database as the jobs, so a multi-host cluster shares them; only
the sealed value is stored (``keyring.Sealed``: key id, nonce, ciphertext),
never the value itself. Every node of a cluster needs the same keyring.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.secrets.base import SecretStore
from orchestrator.secrets.errors import KeyringError, SecretNotFound
from orchestrator.secrets.keyring import Keyring, Sealed
from orchestrator.secrets.model import RefPatterns, Scope, SecretInfo, SecretValue, check_name, check_value
from orchestrator.store.backend import Backend
from orchestrator.store.records import Row

log = logging.getLogger(__name__)

_COLUMNS = "scope, name, refs, key_id, sealed, updated_at"


def _context(scope: Scope, name: str) -> str:
    """The authenticated data of a value's seal: the row it belongs to."""
    return f"solstice secret v1\0{scope}\0{name}"


def _info(row: Row) -> SecretInfo:
    return SecretInfo(Scope.parse(row["scope"]), row["name"], RefPatterns(tuple(json.loads(row["refs"]))),
                      datetime.fromtimestamp(float(row["updated_at"]), tz=UTC), key_id=row["key_id"])


class BuiltinStore(SecretStore):
    """Secrets sealed by ``keyring`` in the state store's database (``backend``).

    Without a keyring nothing can be set, and a job that declares a secret
    that is set fails with the reason (the node cannot open it).
    """

    name = "builtin"

    def __init__(self, backend: Backend, keyring: Keyring | None, no_key_hint: str = "") -> None:
        self.backend = backend
        self.keyring = keyring
        self.no_key_hint = no_key_hint or "configure secrets.key_file or SOLSTICE_SECRETS_KEYS"

    def __repr__(self) -> str:
        return f"BuiltinStore({self.backend.where}, {self.keyring!r})"

    async def open(self) -> None:
        """Nothing to connect: the state store is already open (and migrated)."""

    async def close(self) -> None:
        """Nothing to release."""

    def _keys(self) -> Keyring:
        if self.keyring is None:
            raise KeyringError(f"the built-in secret store has no encryption key: {self.no_key_hint}")
        return self.keyring

    async def fetch(self, repo: Scope, names: Sequence[str]) -> dict[str, SecretValue]:
        wanted = set(names)
        order = repo.lookup_order()
        rows = await self.backend.run(
            f"SELECT {_COLUMNS} FROM secrets WHERE scope = $1 OR scope = $2", str(order[0]), str(order[-1]))
        found: dict[str, SecretValue] = {}
        for scope in order:  # the repository's own first: they win over the owner's
            for row in rows:
                name = row["name"]
                if row["scope"] != str(scope) or name not in wanted or name in found:
                    continue
                value = self._keys().open(Sealed(row["key_id"], bytes(row["sealed"])), _context(scope, name))
                found[name] = SecretValue(scope, name, RefPatterns(tuple(json.loads(row["refs"]))), value)
        return found

    async def list(self, scope: Scope) -> list[SecretInfo]:
        rows = await self.backend.run(f"SELECT {_COLUMNS} FROM secrets WHERE scope = $1 ORDER BY name", str(scope))
        return [_info(row) for row in rows]

    async def put(self, scope: Scope, name: str, value: str, refs: RefPatterns) -> SecretInfo:
        check_name(name)
        sealed = self._keys().seal(check_value(value), _context(scope, name))
        [row] = await self.backend.run(
            "INSERT INTO secrets (scope, name, refs, key_id, sealed, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, {now}, {now}) ON CONFLICT (scope, name) DO UPDATE SET"
            " refs = excluded.refs, key_id = excluded.key_id, sealed = excluded.sealed,"
            f" updated_at = excluded.updated_at RETURNING {_COLUMNS}",
            str(scope), name, json.dumps(list(refs.patterns)), sealed.key_id, sealed.blob,
        )
        log.info("secret set", extra={"fields": {"scope": str(scope), "secret": name, "key": sealed.key_id}})
        return _info(row)

    async def remove(self, scope: Scope, name: str) -> None:
        rows = await self.backend.run(
            "DELETE FROM secrets WHERE scope = $1 AND name = $2 RETURNING name", str(scope), name)
        if not rows:
            raise SecretNotFound(f"no secret {name} in {scope}")
        log.info("secret removed", extra={"fields": {"scope": str(scope), "secret": name}})

    async def rewrap(self) -> int:
        """Seal every value not sealed with the current key again with it; how many changed.

        After this the old keys can leave the keyring. A value changed meanwhile
        (set again by an operator) is left as the newer write made it.
        """
        keys = self._keys()
        rows = await self.backend.run(
            f"SELECT {_COLUMNS} FROM secrets WHERE key_id <> $1 ORDER BY scope, name", keys.current.key_id)
        changed = 0
        for row in rows:
            scope, name = Scope.parse(row["scope"]), row["name"]
            old = Sealed(row["key_id"], bytes(row["sealed"]))
            new = keys.seal(keys.open(old, _context(scope, name)), _context(scope, name))
            done = await self.backend.run(
                "UPDATE secrets SET key_id = $3, sealed = $4 WHERE scope = $1 AND name = $2"
                " AND key_id = $5 AND sealed = $6 RETURNING name",
                str(scope), name, new.key_id, new.blob, old.key_id, old.blob)
            changed += len(done)
        return changed
