"""The ``secrets`` section of a node's settings (``solstice-orchestrator serve`` and ``solstice serve``).

    secrets:
      store: builtin                 # or vault
      key_file: /etc/solstice/secrets.key   # builtin: ID:BASE64 lines, mode 0600 (or SOLSTICE_SECRETS_KEYS)
      vault:
        address: https://vault.example.org:8200
        path: solstice/{forge}/{owner}/{repo}
        auth: approle
        role_id: 1c2d...
        secret_id_file: /etc/solstice/vault-secret-id

Every value can come from the environment (``secrets.vault.token`` ->
``SOLSTICE_SECRETS_VAULT_TOKEN``). docs/secrets.md explains each one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Seconds
from common.errors import ConfigError

STORE_NAMES = ("builtin", "vault")
AUTH_METHODS = ("token", "approle")
PLACEHOLDERS = ("forge", "owner", "repo")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_MOUNT = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def _check_template(template: str, setting: str, needed: tuple[str, ...]) -> None:
    used = _PLACEHOLDER.findall(template)
    unknown = [name for name in used if name not in PLACEHOLDERS]
    if unknown:
        raise ConfigError(f"{setting} {template!r}: unknown placeholder {{{unknown[0]}}}; "
                          f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    missing = [name for name in needed if name not in used]
    if missing:
        raise ConfigError(f"{setting} {template!r} must contain {{{missing[0]}}}: "
                          "otherwise different repositories would share one path")
    if template.startswith("/") or template.endswith("/") or "//" in template:
        raise ConfigError(f"{setting} {template!r} must be a relative path without empty segments")


@dataclass(frozen=True)
class VaultConfig:
    """HashiCorp Vault, KV version 2: one secret per repository, its keys the secret names."""

    address: str = ""  # https://vault.example.org:8200
    mount: str = "secret"  # where the KV v2 engine is mounted
    path: str = "solstice/{forge}/{owner}/{repo}"  # a repository's secrets, inside the mount
    owner_path: str = "solstice/{forge}/{owner}"  # an owner's secrets for all its repositories; "" = none
    auth: str = "token"  # token | approle
    token: str = field(default="", repr=False)  # auth token: the token itself, or ...
    token_file: Path | None = None  # ... a file holding it
    role_id: str = ""  # auth approle
    secret_id: str = field(default="", repr=False)
    secret_id_file: Path | None = None
    approle_mount: str = "approle"  # where the AppRole auth method is mounted
    namespace: str = ""  # Vault Enterprise namespace (X-Vault-Namespace)
    ca_file: Path | None = None  # CA bundle for an https address; default: the system's
    timeout: Seconds = Seconds(10)  # each HTTP request

    def check(self) -> None:
        """Called when the Vault store is chosen: every problem is a ConfigError naming the setting."""
        if not self.address.startswith(("http://", "https://")):
            raise ConfigError("secrets.vault.address must be the Vault URL, e.g. https://vault.example.org:8200")
        if not _MOUNT.fullmatch(self.mount):
            raise ConfigError(f"secrets.vault.mount {self.mount!r} is not a mount path such as 'secret'")
        _check_template(self.path, "secrets.vault.path", ("forge", "owner", "repo"))
        if self.owner_path:
            _check_template(self.owner_path, "secrets.vault.owner_path", ("forge", "owner"))
            if "{repo}" in self.owner_path:
                raise ConfigError("secrets.vault.owner_path cannot contain {repo}: "
                                  "it is shared by an owner's repositories")
        if self.auth not in AUTH_METHODS:
            raise ConfigError(f"secrets.vault.auth must be one of {', '.join(AUTH_METHODS)}, not {self.auth!r}")
        if self.auth == "token" and not (self.token or self.token_file):
            raise ConfigError("secrets.vault.auth token needs secrets.vault.token (SOLSTICE_SECRETS_VAULT_TOKEN) "
                              "or secrets.vault.token_file")
        if self.auth == "approle" and not (self.role_id and (self.secret_id or self.secret_id_file)):
            raise ConfigError("secrets.vault.auth approle needs secrets.vault.role_id and secrets.vault.secret_id "
                              "(SOLSTICE_SECRETS_VAULT_SECRET_ID) or secrets.vault.secret_id_file")
        if not _MOUNT.fullmatch(self.approle_mount):
            raise ConfigError(f"secrets.vault.approle_mount {self.approle_mount!r} is not a mount path")


@dataclass(frozen=True)
class SecretsConfig:
    """Where secret values come from; see the module docstring."""

    store: str = "builtin"
    key_file: Path | None = None  # builtin: the keyring (solstice serve: <data_dir>/secrets.key, made on first start)
    keys: str = field(default="", repr=False)  # builtin: ID:BASE64 entries instead of a file (SOLSTICE_SECRETS_KEYS)
    timeout: Seconds = Seconds(30)  # looking up one job's secrets; past it the job ends errored
    vault: VaultConfig = field(default_factory=VaultConfig)

    def __post_init__(self) -> None:
        if self.store not in STORE_NAMES:
            raise ConfigError(f"secrets.store must be one of {', '.join(STORE_NAMES)}, not {self.store!r}")
        if self.key_file is not None and self.keys:
            raise ConfigError("set secrets.key_file or secrets.keys (SOLSTICE_SECRETS_KEYS), not both")
        if self.store == "vault":
            self.vault.check()
