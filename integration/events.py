"""Forge webhooks, normalized: what happened, independent of which forge said it.

Every webhook body is turned into exactly one of these frozen dataclasses by
``integration.forges.github_events`` or ``integration.forges.forgejo_events``;
everything after that (dedupe, trust, workflow fetch, publishing) only sees
these types.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

ZERO_SHA = "0" * 40


class Forge(enum.Enum):
    GITHUB = "github"
    FORGEJO = "forgejo"


@dataclass(frozen=True, slots=True)
class Repo:
    """The repository a build belongs to (for PRs: the base repository)."""

    forge: Forge
    full_name: str  # "owner/name"
    clone_url: str
    installation_id: int = 0  # GitHub App installation, 0 elsewhere

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Who sent a webhook and which delivery it was."""

    forge: Forge
    event: str  # the forge's event name ("push", "pull_request", ...)
    delivery_id: str


@dataclass(frozen=True, slots=True)
class BuildRequested:
    """Something to build: a branch or tag push, or a pull request's head."""

    repo: Repo
    ref: str  # refs/heads/x, refs/tags/v1, refs/pull/7/head
    sha: str
    origin: str  # "github push", "forgejo pull_request", ...
    trusted: bool = True
    pull_request: int = 0
    is_tag: bool = False
    sender: str = ""
    base_ref: str = ""  # a pull request's base branch (refs/heads/main): its caches are read too

    def to_doc(self) -> dict[str, Any]:
        """The build as a JSON-able dict (kept in the store while it is built or waits for a retry)."""
        repo = {"forge": self.repo.forge.value, "full_name": self.repo.full_name, "clone_url": self.repo.clone_url,
                "installation_id": self.repo.installation_id}
        return {
            "repo": repo, "ref": self.ref, "sha": self.sha, "origin": self.origin, "trusted": self.trusted,
            "pull_request": self.pull_request, "is_tag": self.is_tag, "sender": self.sender,
            "base_ref": self.base_ref,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BuildRequested:
        """The inverse of ``to_doc``; ``ValueError``/``KeyError``/``TypeError`` when ``doc`` is not one."""
        r = doc["repo"]
        repo = Repo(Forge(r["forge"]), str(r["full_name"]), str(r["clone_url"]), int(r["installation_id"]))
        return cls(repo, str(doc["ref"]), str(doc["sha"]), str(doc["origin"]), bool(doc["trusted"]),
                   int(doc["pull_request"]), bool(doc["is_tag"]), str(doc["sender"]), str(doc.get("base_ref", "")))


@dataclass(frozen=True, slots=True)
class PendingBuild:
    """A build being handled or waiting for a retry, with the run id its job ids derive from
    (``integration.jobs.job_id_of``): every publish of it carries the same ids."""

    build: BuildRequested
    run_id: str

    def to_json(self) -> str:
        return json.dumps({"build": self.build.to_doc(), "run_id": self.run_id}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, legacy_run_id: str) -> PendingBuild:
        """The inverse of ``to_json``; a bare ``BuildRequested`` (kept by an older version) gets
        ``legacy_run_id``. ``ValueError``/``KeyError``/``TypeError`` when ``text`` is neither."""
        doc = json.loads(text)
        if "build" in doc:
            return cls(BuildRequested.from_doc(doc["build"]), str(doc["run_id"]))
        return cls(BuildRequested.from_doc(doc), legacy_run_id)


@dataclass(frozen=True, slots=True)
class PullRequestClosed:
    """A pull request was closed (merged or not): cancel its jobs."""

    repo: Repo
    pull_request: int
    sha: str
    merged: bool


@dataclass(frozen=True, slots=True)
class RerunRequested:
    """Someone pressed "Re-run" on one of Solstice's check runs: run that job again (a new attempt)."""

    repo: Repo
    job_id: str  # the check run's external_id
    sha: str
    sender: str = ""


@dataclass(frozen=True, slots=True)
class CommitRerunRequested:
    """Someone pressed "Re-run all checks" on Solstice's check suite of ``sha``: run its finished jobs again."""

    repo: Repo
    sha: str
    sender: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    """The forge checks the hook is alive."""

    zen: str = ""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A delivery that needs no action; ``reason`` is logged and answered."""

    reason: str


WebhookEvent = BuildRequested | PullRequestClosed | RerunRequested | CommitRerunRequested | Ping | Ignored


@dataclass(frozen=True, slots=True)
class PullRequestInfo:
    """The facts a trust policy decides on, taken from a pull request payload."""

    number: int
    from_fork: bool
    labels: tuple[str, ...]
    action: str
    approved_by_maintainer: bool = False  # a review event with state approved by a maintainer
    added_label: str = ""
