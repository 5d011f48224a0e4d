"""Forgejo / Gitea webhook payloads -> ``integration.events`` (Forgejo's ``PushPayload``,
``PullRequestPayload`` API structs)."""

from __future__ import annotations

from typing import Any

from common.validation import CloneRules, check_sha
from integration.events import (
    Forge,
    Ignored,
    Ping,
    PullRequestClosed,
    PullRequestInfo,
    Repo,
    WebhookEvent,
)
from integration.forges.builds import labels_of, pull_request_build, push_build, repo_fields
from integration.payload import INT32_MAX, get, opt
from integration.settings import WebhookSettings

# Forgejo's action names -> the GitHub-style ones the policy speaks.
_ACTIONS = {"synchronized": "synchronize", "label_updated": "labeled"}


def repo_of(payload: dict[str, Any], rules: CloneRules) -> Repo:
    full_name, clone_url = repo_fields(payload, Forge.FORGEJO, rules)
    return Repo(forge=Forge.FORGEJO, full_name=full_name, clone_url=clone_url)


def normalize(
    event: str, payload: dict[str, Any], settings: WebhookSettings, rules: CloneRules = CloneRules()
) -> WebhookEvent:
    """The normalized event of one Forgejo delivery whose ``X-Forgejo-Event`` is ``event``.

    Raises ``PayloadError`` or ``RequestInvalid`` naming a missing or invalid field.
    """
    if event == "ping":
        return Ping()
    if event == "push":
        return _push(payload, settings, rules)
    if event == "pull_request":
        return _pull_request(payload, settings, rules)
    return Ignored(f"Forgejo event {event!r} is not one Solstice acts on")


def _push(payload: dict[str, Any], settings: WebhookSettings, rules: CloneRules) -> WebhookEvent:
    return push_build(payload, repo_of(payload, rules), "forgejo push", settings)


def _pull_request(payload: dict[str, Any], settings: WebhookSettings, rules: CloneRules) -> WebhookEvent:
    raw_action = get(payload, "action", str)
    action = _ACTIONS.get(raw_action, raw_action)
    number = get(payload, "pull_request.number", int, maximum=INT32_MAX)
    repo = repo_of(payload, rules)
    sha = check_sha(get(payload, "pull_request.head.sha", str), "pull_request.head.sha")
    if action == "closed":
        return PullRequestClosed(repo, number, sha, merged=opt(payload, "pull_request.merged", bool) or False)
    head_id = opt(payload, "pull_request.head.repo_id", int) or opt(payload, "pull_request.head.repo.id", int)
    base_id = opt(payload, "pull_request.base.repo_id", int) or get(payload, "repository.id", int)
    labels = labels_of(payload)
    info = PullRequestInfo(
        number=number,
        from_fork=head_id != base_id,
        labels=labels,
        action=action,
        # Forgejo's label_updated does not say which label changed: the policy
        # sees the current labels instead.
        added_label=settings.fork_label if action == "labeled" and settings.fork_label in labels else "",
    )
    return pull_request_build(payload, repo, sha, info, "forgejo pull_request", settings)
