"""What the secrets part talks about: scopes, ref patterns, secrets with and without values.

A secret belongs to a **scope**: a repository (``github/acme/widgets``) or an
owner / organisation (``github/acme``, every repository of that owner). A job
of ``github/acme/widgets`` sees both; a repository secret wins over an owner
secret of the same name. Forge owner and repository names are
case-insensitive, so scopes are kept in lower case.

A secret may be restricted to **refs**: patterns such as ``refs/heads/main``
or ``refs/tags/*`` (``*`` stays within one path segment, ``**`` crosses
them). A restricted secret reaches only jobs building a matching ref; an
unrestricted one reaches every trusted job of its scope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from common.rpc import jobs_pb2
from common.workflow.names import ENV_NAME_RULE, is_env_name
from orchestrator.secrets.errors import InvalidSecret

_FORGE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_SEGMENT = re.compile(r"[a-z0-9_.-]{1,100}")
_REF_PATTERN = re.compile(r"refs/[A-Za-z0-9_.*/+-]+")
MAX_VALUE_BYTES = 64 * 1024
MAX_REFS = 32


def _segment(text: str, what: str, whole: str) -> str:
    low = text.lower()
    if not _SEGMENT.fullmatch(low) or low in (".", ".."):
        raise InvalidSecret(f"scope {whole!r}: {what} {text!r} is not a forge name "
                            "(letters, digits, '.', '_' and '-')")
    return low


@dataclass(frozen=True, order=True)
class Scope:
    """A repository (``repo`` set) or a whole owner/organisation (``repo`` empty) on one forge."""

    forge: str
    owner: str
    repo: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``forge/owner/repo`` or ``forge/owner``; ``InvalidSecret`` naming the problem otherwise."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidSecret(f"scope {text!r} must be FORGE/OWNER/REPO (a repository) "
                                "or FORGE/OWNER (every repository of an owner), e.g. github/acme/widgets")
        forge = parts[0].lower()
        if not _FORGE.fullmatch(forge):
            raise InvalidSecret(f"scope {text!r}: {parts[0]!r} is not a forge name (github, forgejo, ...)")
        owner = _segment(parts[1], "owner", text)
        repo = _segment(parts[2], "repository", text) if len(parts) == 3 else ""
        return cls(forge, owner, repo)

    @classmethod
    def of_checkout(cls, checkout: jobs_pb2.Checkout) -> Scope | None:
        """The repository a job builds, or None when it is not a forge repository (a local path)."""
        if checkout.forge in ("", "local"):
            return None
        try:
            scope = cls.parse(f"{checkout.forge}/{checkout.repo}")
        except InvalidSecret:
            return None
        return scope if scope.repo else None

    @property
    def is_repository(self) -> bool:
        return bool(self.repo)

    @property
    def owner_scope(self) -> Scope:
        return Scope(self.forge, self.owner)

    def lookup_order(self) -> tuple[Scope, ...]:
        """Where a job of this repository finds its secrets, first match wins."""
        return (self, self.owner_scope) if self.repo else (self,)

    def __str__(self) -> str:
        return "/".join(p for p in (self.forge, self.owner, self.repo) if p)


def check_name(name: str) -> str:
    """A secret name reaches the steps as an environment variable, so it must be a valid one."""
    if not is_env_name(name):
        raise InvalidSecret(f"invalid secret name {name!r}: use {ENV_NAME_RULE}")
    return name


def check_value(value: str) -> str:
    if not value:
        raise InvalidSecret("a secret value cannot be empty")
    if "\0" in value:
        raise InvalidSecret("a secret value cannot contain NUL bytes (it becomes an environment variable)")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidSecret(f"a secret value is limited to {MAX_VALUE_BYTES // 1024} KiB")
    return value


@dataclass(frozen=True)
class RefPatterns:
    """The refs a secret is restricted to; empty = every ref."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> RefPatterns:
        found: list[str] = []
        for raw in patterns:
            pattern = raw.strip()
            if not _REF_PATTERN.fullmatch(pattern) or ".." in pattern or "//" in pattern or "***" in pattern:
                raise InvalidSecret(f"ref pattern {raw!r} must be a full ref such as refs/heads/main or "
                                    "refs/tags/* ('*' within a segment, '**' across segments)")
            if pattern not in found:
                found.append(pattern)
        if len(found) > MAX_REFS:
            raise InvalidSecret(f"a secret may be restricted to at most {MAX_REFS} ref patterns")
        return cls(tuple(found))

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        def one(pattern: str) -> str:
            pieces = re.split(r"(\*\*|\*)", pattern)
            return "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in pieces)
        return re.compile("|".join(f"(?:{one(p)})" for p in self.patterns))

    def allows(self, ref: str) -> bool:
        return not self.patterns or self._regex.fullmatch(ref) is not None

    def __str__(self) -> str:
        return ", ".join(self.patterns) if self.patterns else "every ref"


@dataclass(frozen=True)
class SecretInfo:
    """A stored secret without its value: what ``ciadm secret list`` shows."""

    scope: Scope
    name: str
    refs: RefPatterns
    updated_at: datetime | None
    key_id: str = ""  # the built-in store's key that seals it ("" for Vault)
    version: int = 0  # Vault's KV version (0 for the built-in store)


@dataclass(frozen=True)
class SecretValue:
    """One secret with its value, held in memory for one job attempt only."""

    scope: Scope
    name: str
    refs: RefPatterns
    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"SecretValue({self.scope}/{self.name}, refs={self.refs}, value=***)"
