"""When a push or a pull request becomes a build: the rules both forges' webhook normalizers share.

Each forge reads its own payload shape (``github_events``, ``forgejo_events``);
what it then decides - a deleted ref, a tag, a ref that is neither branch nor
tag, the pull-request policy - is the same and lives here.
"""

from __future__ import annotations

from typing import Any

from common.validation import CloneRules, check_clone_url, check_repo, check_sha
from integration.events import ZERO_SHA, BuildRequested, Forge, Ignored, PullRequestInfo, Repo
from integration.payload import get, opt
from integration.policy import decide
from integration.settings import WebhookSettings


def repo_fields(payload: dict[str, Any], forge: Forge, rules: CloneRules) -> tuple[str, str]:
    """``repository.full_name`` and ``repository.clone_url``, checked (``RequestInvalid`` names the field)."""
    name = check_repo(forge.value, get(payload, "repository.full_name", str), "repository.full_name")
    return name, check_clone_url(get(payload, "repository.clone_url", str), rules, "repository.clone_url")


def sender_of(payload: dict[str, Any]) -> str:
    """Who caused the delivery (``sender.login``), "" if the payload does not say."""
    return opt(payload, "sender.login", str) or ""


def labels_of(payload: dict[str, Any]) -> tuple[str, ...]:
    """The names of the pull request's labels, skipping malformed entries."""
    return tuple(
        label["name"] for label in (opt(payload, "pull_request.labels", list) or [])
        if isinstance(label, dict) and isinstance(label.get("name"), str)
    )


def push_build(
    payload: dict[str, Any], repo: Repo, origin: str, settings: WebhookSettings, deleted: bool = False
) -> BuildRequested | Ignored:
    """The build of a push (``ref``, ``after``), or why there is none."""
    ref = get(payload, "ref", str)
    after = get(payload, "after", str)
    if deleted or after == ZERO_SHA:
        return Ignored(f"{ref} was deleted: nothing to build")
    check_sha(after, "after")
    is_tag = ref.startswith("refs/tags/")
    if is_tag and not settings.build_tags:
        return Ignored(f"tag push {ref} ignored (webhooks.build_tags is off)")
    if not is_tag and not ref.startswith("refs/heads/"):
        return Ignored(f"push to {ref} is neither a branch nor a tag")
    return BuildRequested(
        repo=repo, ref=ref, sha=after, origin=origin, trusted=True, is_tag=is_tag, sender=sender_of(payload),
    )


def pull_request_build(
    payload: dict[str, Any], repo: Repo, sha: str, info: PullRequestInfo, origin: str, settings: WebhookSettings
) -> BuildRequested | Ignored:
    """The build of pull request ``info`` at ``sha`` if the policy allows it, or why not."""
    decision = decide(info, settings)
    if not decision.build:
        return Ignored(f"pull request #{info.number}: {decision.reason}")
    base = opt(payload, "pull_request.base.ref", str) or ""
    return BuildRequested(
        repo=repo, ref=f"refs/pull/{info.number}/head", sha=sha, origin=origin,
        trusted=decision.trusted, pull_request=info.number, sender=sender_of(payload),
        base_ref=f"refs/heads/{base}" if base and not base.startswith("refs/") else base,
    )
