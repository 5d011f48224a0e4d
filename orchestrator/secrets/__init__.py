"""Secrets: stored encrypted (built in) or in Vault, handed to trusted jobs only, audited.

    async with open_secrets(settings.secrets, state_store, host) as broker:
        granted = await broker.resolve(request, job_id, attempt)   # SecretsRefused / SecretError
        # ... the runner's GetJob: await granted.delivered(), then send granted.values

One module per concern: ``model`` (scopes, ref patterns), ``policy`` (who
gets what), ``base`` (the ``SecretStore`` interface), ``builtin`` +
``keyring`` (values sealed in the state store), ``vault`` + ``vault_client``
(HashiCorp Vault KV v2), ``audit`` (one record per delivery), ``broker``
(the three together for a node), ``settings``, ``open`` (the registry of
stores). See docs/secrets.md.
"""

from orchestrator.secrets.audit import DELIVERED, REFUSED, AuditLog, Delivery
from orchestrator.secrets.base import SecretStore
from orchestrator.secrets.broker import Granted, SecretBroker, SecretsRefused
from orchestrator.secrets.errors import (
    InvalidSecret,
    KeyringError,
    ReadOnlyStore,
    SecretError,
    SecretNotFound,
    SecretStoreUnavailable,
)
from orchestrator.secrets.model import RefPatterns, Scope, SecretInfo, SecretValue
from orchestrator.secrets.open import STORES, open_secrets
from orchestrator.secrets.settings import SecretsConfig, VaultConfig

__all__ = [
    "DELIVERED", "REFUSED", "STORES", "AuditLog", "Delivery", "Granted", "InvalidSecret", "KeyringError",
    "ReadOnlyStore", "RefPatterns", "Scope", "SecretBroker", "SecretError", "SecretInfo", "SecretNotFound",
    "SecretStore", "SecretStoreUnavailable", "SecretValue", "SecretsConfig", "SecretsRefused", "VaultConfig",
    "open_secrets",
]
