"""Which caches a job reads and where it may save: its repository and branch.

A push to a branch reads and writes that branch's caches. A pull request
reads its own (``pull/N``), then its base branch's; it writes its own only
when trusted: a fork's pull request (``trusted`` false) never writes, so
code from outside cannot plant a cache a trusted build will restore.
Jobs without a base (ciadm, cidev) read and write their ref's branch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from common.rpc import jobs_pb2


def scope_id(text: str) -> str:
    """A fixed-size, path- and dataset-safe name for a repository or branch."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheScope:
    """A job's view of the caches of its repository."""

    repo: str  # "github/owner/name"
    reads: tuple[str, ...]  # branches read, in order
    writes: str | None  # the branch saved to; None: restore only

    @property
    def repo_id(self) -> str:
        return scope_id(self.repo)


def _branch(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    if ref.startswith("refs/pull/"):
        return "pull/" + ref.split("/")[2]
    return ref or "-"


def cache_scope(request: jobs_pb2.JobRequest) -> CacheScope:
    """The scope of ``request``'s job (see the module docstring)."""
    checkout = request.checkout
    repo = f"{checkout.forge or 'git'}/{checkout.repo}"
    own = f"pull/{checkout.pull_request}" if checkout.pull_request else _branch(checkout.ref)
    reads = [own]
    if request.cache_base_ref:
        base = _branch(request.cache_base_ref)
        if base not in reads:
            reads.append(base)
    return CacheScope(repo, tuple(reads), own if request.trusted else None)
