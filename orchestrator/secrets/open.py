"""``open_secrets``: the node's ``SecretBroker`` from its settings, for the duration of a block.

    async with open_secrets(settings.secrets, store, host) as broker:
        ...

``STORES`` maps ``secrets.store`` to a factory; a new back-end is one module
and one entry here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from orchestrator.secrets.audit import AuditLog
from orchestrator.secrets.base import SecretStore
from orchestrator.secrets.broker import SecretBroker
from orchestrator.secrets.builtin import BuiltinStore
from orchestrator.secrets.errors import SecretError
from orchestrator.secrets.keyring import Keyring, append_key
from orchestrator.secrets.settings import SecretsConfig
from orchestrator.secrets.vault import VaultStore
from orchestrator.store import Store
from orchestrator.store.backend import Backend

log = logging.getLogger(__name__)

StoreFactory = Callable[[SecretsConfig, Backend, Path | None], SecretStore]


def sql_backend(store: Store) -> Backend:
    """The database under ``store``: secrets and their audit trail share it."""
    backend = getattr(store, "backend", None)
    if not isinstance(backend, Backend):
        raise SecretError(f"{store!r} is not an SQL state store: secrets need one")
    return backend


def load_keyring(config: SecretsConfig, default_key_file: Path | None = None) -> Keyring | None:
    """The keyring from ``keys``/``key_file``; with neither, ``default_key_file`` (made with a
    first key when missing: the single node's no-configuration start), else None."""
    if config.keys:
        return Keyring.parse(config.keys, "SOLSTICE_SECRETS_KEYS")
    path = config.key_file or default_key_file
    if path is None:
        return None
    if config.key_file is None and not path.exists():
        key_id = append_key(path)
        log.info("made a secrets key file with key %s", key_id, extra={"fields": {"path": str(path)}})
    return Keyring.from_file(path)


def _builtin(config: SecretsConfig, backend: Backend, default_key_file: Path | None) -> SecretStore:
    return BuiltinStore(backend, load_keyring(config, default_key_file))


def _vault(config: SecretsConfig, backend: Backend, default_key_file: Path | None) -> SecretStore:
    return VaultStore(config.vault)


STORES: dict[str, StoreFactory] = {"builtin": _builtin, "vault": _vault}


def make_store(config: SecretsConfig, backend: Backend, default_key_file: Path | None = None) -> SecretStore:
    try:
        factory = STORES[config.store]
    except KeyError:
        raise SecretError(f"unknown secret store {config.store!r}; known: {', '.join(STORES)}") from None
    return factory(config, backend, default_key_file)


@contextlib.asynccontextmanager
async def open_secrets(config: SecretsConfig, state: Store, host: str,
                       default_key_file: Path | None = None) -> AsyncIterator[SecretBroker]:
    """The node's broker over the configured store, opened; closed when the block ends.

    ``default_key_file``: where the built-in store keeps its keyring when none
    is configured (``solstice serve``: in the data directory).
    """
    backend = sql_backend(state)
    store = make_store(config, backend, default_key_file)
    async with store:
        log.info("secret store: %s", store.name, extra={"fields": {"host": host}})
        yield SecretBroker(store, AuditLog(backend), host, timeout=float(config.timeout))
