"""Whether a pull request is built, and with how much trust.

Pull requests from the base repository are trusted. Fork pull requests run
untrusted (``trusted=False``: the orchestrator hands out no secrets); with
``fork_policy`` ``label`` or ``approval`` they do not run at all until a
maintainer adds the label or approves the PR - and even then they stay
untrusted, because the code that runs is still the fork's.
"""

from __future__ import annotations

from dataclasses import dataclass

from integration.events import PullRequestInfo
from integration.settings import WebhookSettings

BUILD_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


@dataclass(frozen=True, slots=True)
class Decision:
    build: bool
    trusted: bool
    reason: str  # why not, or what kind of build


def decide(pr: PullRequestInfo, settings: WebhookSettings) -> Decision:
    """Apply the fork policy of ``settings`` to one pull request delivery."""
    if not pr.from_fork:
        if pr.action in BUILD_ACTIONS:
            return Decision(True, True, "pull request from the base repository")
        return Decision(False, True, f"pull_request action {pr.action!r} needs no build")
    policy = settings.fork_policy
    if policy == "untrusted":
        if pr.action in BUILD_ACTIONS:
            return Decision(True, False, "fork pull request: runs without secrets")
        return Decision(False, False, f"pull_request action {pr.action!r} needs no build")
    if policy == "label":
        label = settings.fork_label
        if pr.action == "labeled" and pr.added_label == label:
            return Decision(True, False, f"fork pull request labelled {label!r}")
        if pr.action in BUILD_ACTIONS and label in pr.labels:
            return Decision(True, False, f"fork pull request carries {label!r}")
        return Decision(False, False, f"fork pull request waits for a maintainer to add the label {label!r}")
    # approval: only an approving review by a maintainer starts a build;
    # every new commit needs a new approval.
    if pr.action == "approved" and pr.approved_by_maintainer:
        return Decision(True, False, "fork pull request approved by a maintainer")
    return Decision(False, False, "fork pull request waits for a maintainer's approving review")
