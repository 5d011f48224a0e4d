"""An upstream webhook, read for the relay: what changed, and the dispatch a downstream receives.

The relay reads the verified webhook itself rather than the build the
webhook service decided on: downstreams get every push and every pull
request opened, reopened, synchronized or closed, whether or not Solstice
builds it (a fork's pull request waiting for a label still reaches them,
marked ``from_fork``: what a downstream runs of a fork is its own call).

The dispatch (``dispatch_body``) is versioned and carries only what a
downstream needs - never the webhook itself::

    {"event_type": "solstice-upstream",
     "client_payload": {"schema_version": 1, "delivery_id": "github:<guid>",
                        "upstream": {"forge": "github", "repo": "octo-org/octo-repo", "clone_url": "https://..."},
                        "event": "pull_request", "action": "synchronize", "sha": "<40 hex>",
                        "ref": "refs/pull/7/head", "pr_number": 7, "from_fork": false,
                        "results_url": "https://ci.example.org/api/v1/results"}}

(ten top-level properties: GitHub's limit for ``client_payload``; the JSON
schema is ``integration/external/schemas/dispatch-v1.schema.json``, published
in docs/schemas/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.validation import CloneRules, check_clone_url, check_repo, check_sha
from integration.events import ZERO_SHA, Delivery, Forge
from integration.external.allowlist import RepoKey
from integration.payload import INT32_MAX, get, opt

DISPATCH_SCHEMA_VERSION = 1
RELAYED_ACTIONS = frozenset({"opened", "reopened", "synchronize", "closed"})
_FORGEJO_ACTIONS = {"synchronized": "synchronize"}


@dataclass(frozen=True, slots=True)
class UpstreamChange:
    """A push or a pull request event of an upstream repository, as relayed."""

    delivery: str  # "<forge>:<delivery id>": what a report names
    upstream: RepoKey
    clone_url: str
    installation_id: int  # GitHub App installation of the upstream (L4 check runs); 0 elsewhere
    event: str  # push / pull_request
    action: str  # push / opened / reopened / synchronize / closed
    sha: str
    ref: str
    pr_number: int = 0
    from_fork: bool = False


def _from_fork(forge: Forge, payload: dict[str, Any]) -> bool:
    if forge is Forge.GITHUB:
        # A deleted fork leaves head.repo null: certainly not the base repository.
        head = opt(payload, "pull_request.head.repo.full_name", str)
        return head != opt(payload, "pull_request.base.repo.full_name", str)
    head_id = opt(payload, "pull_request.head.repo_id", int) or opt(payload, "pull_request.head.repo.id", int)
    base_id = opt(payload, "pull_request.base.repo_id", int) or opt(payload, "repository.id", int)
    return head_id != base_id


def upstream_change(delivery: Delivery, payload: dict[str, Any],
                    rules: CloneRules = CloneRules()) -> UpstreamChange | None:
    """The change a verified delivery describes, or None when it is nothing the relay passes on.

    Raises ``PayloadError`` / ``RequestInvalid`` naming a missing or invalid field.
    """
    if delivery.event not in ("push", "pull_request"):
        return None
    forge = delivery.forge
    name = check_repo(forge.value, get(payload, "repository.full_name", str), "repository.full_name")
    clone_url = check_clone_url(get(payload, "repository.clone_url", str), rules, "repository.clone_url")
    upstream = RepoKey(forge, name)
    installation = opt(payload, "installation.id", int) or 0 if forge is Forge.GITHUB else 0
    key = f"{forge.value}:{delivery.delivery_id}"
    if delivery.event == "push":
        after = get(payload, "after", str)
        ref = get(payload, "ref", str)
        if after == ZERO_SHA or payload.get("deleted") is True or not ref.startswith(("refs/heads/", "refs/tags/")):
            return None
        return UpstreamChange(key, upstream, clone_url, installation, "push", "push", check_sha(after, "after"), ref)
    raw = get(payload, "action", str)
    action = _FORGEJO_ACTIONS.get(raw, raw) if forge is Forge.FORGEJO else raw
    if action not in RELAYED_ACTIONS:
        return None
    number = get(payload, "pull_request.number", int, maximum=INT32_MAX)
    sha = check_sha(get(payload, "pull_request.head.sha", str), "pull_request.head.sha")
    return UpstreamChange(key, upstream, clone_url, installation, "pull_request", action, sha,
                          f"refs/pull/{number}/head", number, _from_fork(forge, payload))


def dispatch_body(change: UpstreamChange, event_type: str, results_url: str) -> dict[str, Any]:
    """The request body of a GitHub ``repository_dispatch`` (and of the Forgejo webhook): schema version 1."""
    return {
        "event_type": event_type,
        "client_payload": {
            "schema_version": DISPATCH_SCHEMA_VERSION,
            "delivery_id": change.delivery,
            "upstream": {"forge": change.upstream.forge.value, "repo": change.upstream.name,
                         "clone_url": change.clone_url},
            "event": change.event,
            "action": change.action,
            "sha": change.sha,
            "ref": change.ref,
            "pr_number": change.pr_number or None,
            "from_fork": change.from_fork,
            "results_url": results_url,
        },
    }

