"""``SecretStore``: the one small interface every secret back-end implements.

Lifetime: unopened until ``open()`` (which connects, authenticates and
starts any background renewal), usable until ``close()``; ``async with``
does both. A store is opened once per node and shared by every job attempt;
it holds no value between calls: ``fetch`` reads the values of one job
attempt, which the caller keeps for that attempt's life only.

Implementations are registered by name in ``orchestrator.secrets.open.STORES``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType

from orchestrator.secrets.errors import ReadOnlyStore
from orchestrator.secrets.model import RefPatterns, Scope, SecretInfo, SecretValue


class SecretStore(abc.ABC):
    """Where secret values live. See the module docstring for lifetime."""

    #: the name in ``secrets.store`` (and in audit records)
    name: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect / authenticate. ``SecretStoreUnavailable`` (or ``KeyringError``) when it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop background work and disconnect; idempotent."""

    async def __aenter__(self) -> SecretStore:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @abc.abstractmethod
    async def fetch(self, repo: Scope, names: Sequence[str]) -> dict[str, SecretValue]:
        """The secrets of ``names`` a job of repository ``repo`` can see: the repository's own,
        else its owner's (``Scope.lookup_order``). Names set nowhere are absent from the
        result; whether the job may have what was found (refs) is the caller's decision.
        ``SecretStoreUnavailable`` / ``KeyringError`` when the store cannot answer."""

    @abc.abstractmethod
    async def list(self, scope: Scope) -> list[SecretInfo]:
        """The secrets stored in exactly ``scope``, by name, without values."""

    async def put(self, scope: Scope, name: str, value: str, refs: RefPatterns) -> SecretInfo:
        """Create or replace a secret. ``ReadOnlyStore`` for stores managed elsewhere."""
        raise ReadOnlyStore(self.read_only_hint(scope))

    async def remove(self, scope: Scope, name: str) -> None:
        """Delete a secret; ``SecretNotFound`` when it is not set. ``ReadOnlyStore`` likewise."""
        raise ReadOnlyStore(self.read_only_hint(scope))

    def read_only_hint(self, scope: Scope) -> str:
        return f"the {self.name} secret store is read-only for Solstice"
