"""The HashiCorp Vault secret store (KV secrets engine, version 2). Read-only for Solstice.

Each repository has one KV secret at ``secrets.vault.path`` (default
``solstice/{forge}/{owner}/{repo}``) inside the mount ``secrets.vault.mount``;
its keys are the secret names, its values the secret values. An owner's
secrets for all its repositories live at ``secrets.vault.owner_path``
(``solstice/{forge}/{owner}``); the repository's own win. Ref restrictions
are the secret's ``custom_metadata``: ``solstice.refs`` for every key of the
path, ``solstice.refs.NAME`` for one, each a space- or comma-separated list
of ref patterns.

Values are read from Vault for each job attempt that declares secrets
(``GET /v1/<mount>/data/<path>``, the latest version) and kept only in that
attempt's memory. A path that does not exist, or whose latest version is
deleted or destroyed (Vault answers 404), holds no secrets; 403 (the node's
policy does not allow reading the path) fails the job ``errored`` with the
path named, so the operator can fix the policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from common.workflow.names import is_env_name
from orchestrator.secrets.base import SecretStore
from orchestrator.secrets.errors import InvalidSecret, SecretStoreUnavailable
from orchestrator.secrets.model import RefPatterns, Scope, SecretInfo, SecretValue
from orchestrator.secrets.settings import VaultConfig
from orchestrator.secrets.vault_client import VaultClient

REFS_KEY = "solstice.refs"
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


@dataclass(frozen=True)
class _Entry:
    """One KV secret: its values, ref restrictions and version metadata."""

    path: str
    values: dict[str, str]
    custom: dict[str, str]
    version: int
    created: datetime | None

    def refs(self, name: str) -> RefPatterns:
        text = self.custom.get(f"{REFS_KEY}.{name}", self.custom.get(REFS_KEY, ""))
        try:
            return RefPatterns.parse(p for p in re.split(r"[\s,]+", text) if p)
        except InvalidSecret as err:
            raise SecretStoreUnavailable(f"Vault secret {self.path}: custom_metadata {REFS_KEY}: {err}") from None


def _time(text: Any) -> datetime | None:
    """Vault's RFC 3339 times carry nanoseconds; Python reads microseconds."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


class VaultStore(SecretStore):
    """Secrets read from Vault KV v2; ``put``/``remove`` are refused (manage them in Vault)."""

    name = "vault"

    def __init__(self, config: VaultConfig, client: VaultClient | None = None) -> None:
        self.config = config
        self.client = client or VaultClient(config)

    def __repr__(self) -> str:
        return f"VaultStore({self.config.address}, mount={self.config.mount})"

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    def path_of(self, scope: Scope) -> str:
        """The KV path of ``scope`` inside the mount; every name segment is URL-quoted."""
        template = self.config.path if scope.is_repository else self.config.owner_path
        if not template:
            raise InvalidSecret(f"{scope} is an owner: secrets.vault.owner_path is empty, so Vault holds no "
                                "owner-wide secrets")
        parts = {"forge": scope.forge, "owner": scope.owner, "repo": scope.repo}
        return template.format(**{k: quote(v, safe="") for k, v in parts.items()})

    def read_only_hint(self, scope: Scope) -> str:
        return (f"secrets are kept in Vault: set them there, e.g. "
                f"vault kv patch -mount={self.config.mount} {self.path_of(scope)} NAME=-")

    async def _read(self, scope: Scope) -> _Entry | None:
        path = self.path_of(scope)
        where = f"{self.config.mount}/data/{path}"
        answer = await self.client.read(where)
        if answer.status == 404:
            return None  # no such path, or its latest version is deleted or destroyed
        if answer.status == 403:
            raise SecretStoreUnavailable(f"Vault denied reading {where} (permission denied): the node's "
                                         "policy must allow read on it")
        if answer.status != 200:
            raise SecretStoreUnavailable(f"Vault answered reading {where} with {answer.errors()}")
        outer = answer.body.get("data") if isinstance(answer.body, dict) else None
        data = outer.get("data") if isinstance(outer, dict) else None
        meta = outer.get("metadata") if isinstance(outer, dict) else None
        if not isinstance(data, dict) or not isinstance(meta, dict):
            raise SecretStoreUnavailable(f"Vault's answer for {where} is not a KV version 2 secret "
                                         "(is secrets.vault.mount a KV v2 mount?)")
        values: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(value, str):
                raise SecretStoreUnavailable(f"Vault secret {where}: the value of {key!r} is a "
                                             f"{type(value).__name__}, not a string")
            values[key] = value
        custom = meta.get("custom_metadata") or {}
        version = meta.get("version")
        return _Entry(where, values, {str(k): str(v) for k, v in dict(custom).items()},
                      version if isinstance(version, int) else 0, _time(meta.get("created_time")))

    def _scopes(self, repo: Scope) -> tuple[Scope, ...]:
        return repo.lookup_order() if self.config.owner_path else (repo,)

    async def fetch(self, repo: Scope, names: Sequence[str]) -> dict[str, SecretValue]:
        found: dict[str, SecretValue] = {}
        for scope in self._scopes(repo):
            if all(name in found for name in names):
                break  # the owner's path is only read for names the repository lacks
            entry = await self._read(scope)
            if entry is None:
                continue
            for name in names:
                if name not in found and name in entry.values:
                    found[name] = SecretValue(scope, name, entry.refs(name), entry.values[name])
        return found

    async def list(self, scope: Scope) -> list[SecretInfo]:
        entry = await self._read(scope)
        if entry is None:
            return []
        return [SecretInfo(scope, name, entry.refs(name), entry.created, version=entry.version)
                for name in sorted(entry.values) if is_env_name(name)]
