"""Settings of greenness (section ``greenness`` of the integration's settings); off by default.

Example (YAML)::

    greenness:
      enabled: true
      refs: ["refs/heads/*"]          # refs that become queues on first use
      incomplete_after: 2h            # required jobs not all reported by then: "incomplete"
      queues:                         # queues made from config (polled when poll_interval is set)
        main: {repo: "forgejo:acme/app", ref: refs/heads/main, poll_interval: 60s,
               weights: {build: 2}, external_required: ["docs (ext)"]}
      projects:                       # monorepos: greenness per project as well
        web: {repo: "forgejo:acme/app", paths: ["web/**"], jobs: [web-test]}
        api: {repo: "forgejo:acme/app", paths: ["api/**", "proto/**"], jobs: [api-test]}
      hooks:
        deploy: {url: "https://deploy.example/hook", secret: "...", queues: ["forgejo:acme/app:refs/heads/main"]}
        notify: {command: ["/usr/local/bin/notify", "--green"], timeout: 30s}
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from common.config import Seconds
from common.errors import ConfigError

_REPO = re.compile(r"(github|forgejo):[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def split_repo(text: str, where: str) -> tuple[str, str]:
    """``forge:owner/name`` as (forge, owner/name); ``ConfigError`` naming ``where`` otherwise."""
    if not _REPO.fullmatch(text):
        raise ConfigError(f"{where}: {text!r} is not a repository (write github:owner/name or forgejo:owner/name)")
    forge, repo = text.split(":", 1)
    return forge, repo


@dataclass(frozen=True)
class QueueSettings:
    """A queue made from config: its weights and extra required results, polled when ``poll_interval`` > 0."""

    repo: str = ""  # forge:owner/name
    ref: str = "refs/heads/main"
    poll_interval: Seconds = Seconds(0)  # 0: fed by webhooks only
    clone_url: str = ""  # for polled builds; "" = the forge's usual URL
    weights: dict[str, float] = field(default_factory=dict)  # job key -> weight (default 1)
    external_required: tuple[str, ...] = ()  # out-of-tree result columns that count as required jobs

    def check(self, name: str) -> None:
        split_repo(self.repo, f"greenness.queues.{name}.repo")
        if not self.ref.startswith("refs/"):
            raise ConfigError(f"greenness.queues.{name}.ref {self.ref!r} must be a full ref (refs/heads/...)")
        for job, weight in self.weights.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ConfigError(f"greenness.queues.{name}.weights.{job} must be a number >= 0, not {weight!r}")


@dataclass(frozen=True)
class ProjectSettings:
    """A project inside a repository: the paths it owns and the workflow jobs that validate it."""

    repo: str = ""
    paths: tuple[str, ...] = ()  # glob patterns ("web/**", "*.md"); "**" crosses directories
    jobs: tuple[str, ...] = ()

    def check(self, name: str) -> None:
        split_repo(self.repo, f"greenness.projects.{name}.repo")
        if not self.paths or not self.jobs:
            raise ConfigError(f"greenness.projects.{name} needs paths and jobs")


@dataclass(frozen=True)
class HookSettings:
    """Told of every transition of the queues it follows: a signed webhook, a command, or both."""

    url: str = ""
    secret: str = field(default="", repr=False)  # HMAC-SHA256 key of X-Solstice-Signature-256
    command: tuple[str, ...] = ()  # argv, run with SOLSTICE_QUEUE, SOLSTICE_COMMIT, SOLSTICE_DEGREE, ...
    timeout: Seconds = Seconds(30)
    queues: tuple[str, ...] = ()  # forge:owner/name:ref patterns (fnmatch); empty = every queue
    projects: tuple[str, ...] = ()  # "" = the whole queue; empty = every scope

    def check(self, name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ConfigError(f"greenness.hooks: {name!r} is not a hook name (letters, digits, . _ -)")
        if not self.url and not self.command:
            raise ConfigError(f"greenness.hooks.{name} needs a url or a command")
        if self.url and not self.url.lower().startswith(("https://", "http://")):
            raise ConfigError(f"greenness.hooks.{name}.url must be an http(s) URL")
        if self.url and not self.secret:
            raise ConfigError(f"greenness.hooks.{name}.secret is needed to sign its deliveries")
        if self.timeout <= 0:
            raise ConfigError(f"greenness.hooks.{name}.timeout must be more than 0")

    def follows(self, queue: str, project: str) -> bool:
        return (not self.queues or any(fnmatch.fnmatchcase(queue, p) for p in self.queues)) and (
            not self.projects or project in self.projects)


@dataclass(frozen=True)
class GreennessSettings:
    """See the module docstring."""

    enabled: bool = False
    refs: tuple[str, ...] = ("refs/heads/*",)
    incomplete_after: Seconds = Seconds(2 * 3600)
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    projects: dict[str, ProjectSettings] = field(default_factory=dict)
    hooks: dict[str, HookSettings] = field(default_factory=dict)
    hook_backoff: Seconds = Seconds(5)  # first pause after a failed delivery; doubles
    hook_backoff_max: Seconds = Seconds(600)
    hook_interval: Seconds = Seconds(1)  # how often due deliveries and incomplete commits are looked for
    hook_lease: Seconds = Seconds(120)  # one replica delivers a transition at a time

    def __post_init__(self) -> None:
        for name, queue in self.queues.items():
            queue.check(name)
        for name, project in self.projects.items():
            if not _NAME.fullmatch(name):
                raise ConfigError(f"greenness.projects: {name!r} is not a project name (letters, digits, . _ -)")
            project.check(name)
        for name, hook in self.hooks.items():
            hook.check(name)
        if self.incomplete_after <= 0:
            raise ConfigError("greenness.incomplete_after must be more than 0")
        if self.hook_lease <= max((h.timeout for h in self.hooks.values()), default=0):
            raise ConfigError("greenness.hook_lease must be longer than every hook's timeout")

    def tracks(self, forge: str, repo: str, ref: str) -> bool:
        """Whether builds of ``ref`` feed a queue."""
        if not self.enabled:
            return False
        if any(q.repo == f"{forge}:{repo}" and q.ref == ref for q in self.queues.values()):
            return True
        return any(fnmatch.fnmatchcase(ref, pattern) for pattern in self.refs)

    def queue_settings(self, forge: str, repo: str, ref: str) -> QueueSettings:
        for queue in self.queues.values():
            if queue.repo == f"{forge}:{repo}" and queue.ref == ref:
                return queue
        return QueueSettings(repo=f"{forge}:{repo}", ref=ref)

    def projects_of(self, forge: str, repo: str) -> dict[str, ProjectSettings]:
        return {name: p for name, p in self.projects.items() if p.repo == f"{forge}:{repo}"}
