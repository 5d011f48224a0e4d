"""GitHub webhook payloads -> ``integration.events`` (fields as in octokit/webhooks)."""

from __future__ import annotations

import re
from typing import Any

from common.validation import CloneRules, check_repo, check_sha
from integration.events import (
    CommitRerunRequested,
    Forge,
    Ignored,
    Ping,
    PullRequestClosed,
    PullRequestInfo,
    Repo,
    RerunRequested,
    WebhookEvent,
)
from integration.forges.builds import (
    labels_of,
    pull_request_build,
    push_build,
    repo_fields,
    sender_of,
)
from integration.payload import INT32_MAX, get, opt
from integration.settings import WebhookSettings

MAINTAINERS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
# The check runs' external_id (integration.reporting.github.check_external_id): a job id as
# integration.jobs makes them, then ":<attempt>" from the second attempt on.
JOB_ID = re.compile(r"(job-[0-9a-f]{32})(?::[0-9]{1,9})?")


def repo_of(payload: dict[str, Any], rules: CloneRules) -> Repo:
    full_name, clone_url = repo_fields(payload, Forge.GITHUB, rules)
    return Repo(Forge.GITHUB, full_name, clone_url, installation_id=opt(payload, "installation.id", int) or 0)


def normalize(
    event: str, payload: dict[str, Any], settings: WebhookSettings, rules: CloneRules = CloneRules()
) -> WebhookEvent:
    """The normalized event of one GitHub delivery of type ``event``.

    Raises ``PayloadError`` or ``RequestInvalid`` naming a missing or invalid field.
    """
    if event == "ping":
        return Ping(opt(payload, "zen", str) or "")
    if event == "push":
        return _push(payload, settings, rules)
    if event in ("pull_request", "pull_request_review"):
        return _pull_request(event, payload, settings, rules)
    if event == "check_run":
        return _check_run(payload)
    if event == "check_suite":
        return _check_suite(payload)
    return Ignored(f"GitHub event {event!r} is not one Solstice acts on")


def _needs_installation(repo: Repo) -> Ignored | None:
    if repo.installation_id:
        return None
    return Ignored("the delivery names no GitHub App installation; install the Solstice App on the repository")


def _push(payload: dict[str, Any], settings: WebhookSettings, rules: CloneRules) -> WebhookEvent:
    repo = repo_of(payload, rules)
    event = push_build(payload, repo, "github push", settings, deleted=payload.get("deleted") is True)
    return event if isinstance(event, Ignored) else _needs_installation(repo) or event


def _pull_request(event: str, payload: dict[str, Any], settings: WebhookSettings, rules: CloneRules) -> WebhookEvent:
    action = get(payload, "action", str)
    number = get(payload, "pull_request.number", int, maximum=INT32_MAX)
    repo = repo_of(payload, rules)
    sha = check_sha(get(payload, "pull_request.head.sha", str), "pull_request.head.sha")
    if event == "pull_request" and action == "closed":
        return PullRequestClosed(repo, number, sha, merged=opt(payload, "pull_request.merged", bool) or False)
    head_repo = opt(payload, "pull_request.head.repo.full_name", str)
    base_repo = get(payload, "pull_request.base.repo.full_name", str)
    approved = False
    if event == "pull_request_review":
        if action != "submitted" or (opt(payload, "review.state", str) or "").lower() != "approved":
            return Ignored(f"pull_request_review {action!r} is not an approval")
        action = "approved"
        approved = (opt(payload, "review.author_association", str) or "") in MAINTAINERS
        # What was approved is review.commit_id; a commit pushed since needs its own approval.
        reviewed = check_sha(get(payload, "review.commit_id", str), "review.commit_id")
        if approved and reviewed != sha:
            return Ignored(f"the approval of pull request #{number} is for {reviewed[:12]}, which is no longer "
                           f"its head ({sha[:12]}): the new head needs its own approval")
        sha = reviewed
    info = PullRequestInfo(
        number=number,
        # A deleted fork leaves head.repo null: certainly not the base repo.
        from_fork=head_repo != base_repo,
        labels=labels_of(payload),
        action=action,
        approved_by_maintainer=approved,
        added_label=opt(payload, "label.name", str) or "",
    )
    built = pull_request_build(payload, repo, sha, info, f"github {event}", settings)
    return built if isinstance(built, Ignored) else _needs_installation(repo) or built


def _check_run(payload: dict[str, Any]) -> WebhookEvent:
    # GitHub sends an App check_run events of its own check runs only.
    action = get(payload, "action", str)
    if action != "rerequested":
        return Ignored(f"check_run {action!r} needs nothing")
    external_id = opt(payload, "check_run.external_id", str) or ""
    matched = JOB_ID.fullmatch(external_id)
    if not matched:
        return Ignored("the check run to re-run is not one of a Solstice job (the workflow check cannot be re-run)")
    job_id = matched.group(1)
    # A re-run runs the job as stored; the payload's clone URL is not used (old payloads say http://github.com).
    full_name = check_repo("github", get(payload, "repository.full_name", str), "repository.full_name")
    repo = Repo(Forge.GITHUB, full_name, "", installation_id=opt(payload, "installation.id", int) or 0)
    return _needs_installation(repo) or RerunRequested(
        repo, job_id, check_sha(get(payload, "check_run.head_sha", str), "check_run.head_sha"), sender_of(payload),
    )


def _check_suite(payload: dict[str, Any]) -> WebhookEvent:
    # "requested" comes with every push, which the push event builds already; "Re-run all checks" is "rerequested".
    action = get(payload, "action", str)
    if action != "rerequested":
        return Ignored(f"check_suite {action!r} needs nothing (pushes are built from their push events)")
    full_name = check_repo("github", get(payload, "repository.full_name", str), "repository.full_name")
    repo = Repo(Forge.GITHUB, full_name, "", installation_id=opt(payload, "installation.id", int) or 0)
    sha = check_sha(get(payload, "check_suite.head_sha", str), "check_suite.head_sha")
    return _needs_installation(repo) or CommitRerunRequested(repo, sha, sender_of(payload))
