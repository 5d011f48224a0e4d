"""The secrets part's errors, each a one-line message for the person who acts on it.

    SecretError                    (SolsticeError)
    ├── InvalidSecret              a bad scope, name, ref pattern or value (operator input)
    ├── SecretNotFound             rm/of a secret that is not set
    ├── ReadOnlyStore              set/rm on a store managed elsewhere (Vault)
    ├── KeyringError               no key, a bad key file, a value sealed with a key not held
    └── SecretStoreUnavailable     the store cannot answer (Vault down, 403, the database)

Refusing a job its secrets is not an error of this hierarchy: the policy
returns a ``Refusal`` that ends the job ``failed`` with its reason.
"""

from __future__ import annotations

from common.errors import SolsticeError


class SecretError(SolsticeError):
    """Base class of the secrets part."""


class InvalidSecret(SecretError, ValueError):
    """A scope, secret name, ref pattern or value that cannot be stored."""


class SecretNotFound(SecretError):
    """No secret of that name in that scope."""


class ReadOnlyStore(SecretError):
    """The configured store is managed with its own tools (``vault kv put``), not through Solstice."""


class KeyringError(SecretError):
    """The built-in store's encryption keys are missing, malformed or do not open a value."""


class SecretStoreUnavailable(SecretError):
    """The secret store could not be read (unreachable, permission denied, malformed answer)."""
