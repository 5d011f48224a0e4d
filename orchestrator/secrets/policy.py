"""Who gets which secret: the rules, as pure functions of the job request and what the store holds.

A job attempt receives a secret only when all of these hold:

1. it declares the name (``secret "NAME"`` in its workflow job);
2. it is **trusted** (``JobRequest.trusted``): never a fork pull request,
   never a job submitted through the API unless that was allowed;
3. it builds a forge repository, and the secret is set for that repository
   or for its owner;
4. the ref it builds matches the secret's ref patterns, if it has any.

A job that declares a secret it cannot have is refused all of them, before
anything of it runs, with a reason naming each name and why - never a
silently empty variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.rpc import jobs_pb2
from orchestrator.secrets.model import Scope, SecretValue


@dataclass(frozen=True)
class Refusal:
    """Why a job attempt gets none of its secrets; ``reason`` is shown on the forge."""

    reason: str


def _names(names: list[str]) -> str:
    quoted = ", ".join(names)
    return f"secret{'s' * (len(names) > 1)} {quoted}"


def before_lookup(request: jobs_pb2.JobRequest, has_store: bool = True) -> Refusal | Scope:
    """The repository to look the job's secrets up in, or why there is nothing to look up."""
    declared = list(request.secrets)
    if not request.trusted:
        why = f"{request.origin} jobs" if request.origin else "this job"
        return Refusal(f"{_names(declared)} refused: the job is untrusted ({why} run without secrets; "
                       "fork pull requests and API-submitted jobs get none)")
    scope = Scope.of_checkout(request.checkout)
    if scope is None:
        repo = request.checkout.repo or "(no repository)"
        return Refusal(f"{_names(declared)} refused: the job builds {repo}, not a forge repository; "
                       "secrets are scoped to forge repositories")
    if not has_store:
        return Refusal(f"{_names(declared)} refused: this node has no secret store")
    return scope


def after_lookup(request: jobs_pb2.JobRequest, scope: Scope,
                 found: Mapping[str, SecretValue]) -> Refusal | dict[str, str]:
    """The values the job gets (every declared name), or why it gets none."""
    problems: list[str] = []
    missing = [name for name in request.secrets if name not in found]
    if missing:
        where = " or ".join(str(s) for s in scope.lookup_order())
        problems.append(f"{_names(missing)} not set for {where}")
    ref = request.checkout.ref
    for name in request.secrets:
        secret = found.get(name)
        if secret is not None and not secret.refs.allows(ref):
            problems.append(f"secret {name} is restricted to {secret.refs}; this job builds {ref or 'no ref'}")
    if problems:
        return Refusal("; ".join(problems))
    return {name: found[name].value for name in request.secrets}
