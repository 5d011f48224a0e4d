"""Settings of the forge integration (``common.config`` dataclasses).

The forge credentials keep fixed environment names wherever the section is
nested (the single-node server embeds ``IntegrationSettings`` in its own
config): ``SOLSTICE_GITHUB_WEBHOOK_SECRET``, ``SOLSTICE_GITHUB_APP_ID``,
``SOLSTICE_GITHUB_PRIVATE_KEY_FILE``, ``SOLSTICE_GITHUB_API_URL``,
``SOLSTICE_FORGEJO_WEBHOOK_SECRET``, ``SOLSTICE_FORGEJO_URL``,
``SOLSTICE_FORGEJO_TOKEN`` and ``SOLSTICE_PUBLIC_URL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import Seconds
from common.errors import ConfigError
from dashboard.settings import DashboardSettings
from integration.httpserver import HttpLimits

FORK_POLICIES = ("untrusted", "label", "approval")


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclass(frozen=True)
class GitHubSettings:
    """A GitHub App: webhook secret, App id and private key, API base URL."""

    webhook_secret: str = field(default="", metadata=_env("SOLSTICE_GITHUB_WEBHOOK_SECRET"), repr=False)
    app_id: str = field(default="", metadata=_env("SOLSTICE_GITHUB_APP_ID"))
    private_key_file: Path | None = field(default=None, metadata=_env("SOLSTICE_GITHUB_PRIVATE_KEY_FILE"))
    api_url: str = field(default="https://api.github.com", metadata=_env("SOLSTICE_GITHUB_API_URL"))

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_secret)


@dataclass(frozen=True)
class ForgejoSettings:
    """A Forgejo (or Gitea) instance: webhook secret, base URL and API token."""

    webhook_secret: str = field(default="", metadata=_env("SOLSTICE_FORGEJO_WEBHOOK_SECRET"), repr=False)
    url: str = field(default="", metadata=_env("SOLSTICE_FORGEJO_URL"))
    token: str = field(default="", metadata=_env("SOLSTICE_FORGEJO_TOKEN"), repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_secret)


@dataclass(frozen=True)
class WebhookSettings:
    """What the webhook endpoints accept and build."""

    max_body_bytes: int = 2 * 1024 * 1024
    build_tags: bool = True
    # untrusted: fork PRs run without secrets; label: they run (still without
    # secrets) only once the PR carries ``fork_label``; approval: only once a
    # maintainer approved the PR in a review.
    fork_policy: str = "untrusted"
    fork_label: str = "ci:run"
    dedupe_ttl: Seconds = Seconds(14 * 24 * 3600)
    # GitHub gives up on a delivery after 10 s; stay below it.
    handling_deadline: Seconds = Seconds(8)
    workflow_path: str = ".solstice/workflow.kdl"
    # A build whose workflow read or publish failed (forge API or queue down)
    # is kept and retried in the background, since forges do not redeliver
    # failed webhooks: first after retry_initial, doubling up to retry_max,
    # dropped with a log line after retry_give_up. retry_interval: how often
    # the background task looks for due builds.
    retry_initial: Seconds = Seconds(30)
    retry_max: Seconds = Seconds(600)
    retry_give_up: Seconds = Seconds(24 * 3600)
    retry_interval: Seconds = Seconds(5)
    # A clone URL that is a local path or file:// (tests, a forge on this very
    # host) is refused unless this is on; `solstice serve` turns it on.
    allow_local_checkouts: bool = False

    def __post_init__(self) -> None:
        if self.fork_policy not in FORK_POLICIES:
            raise ConfigError(
                f"webhooks.fork_policy {self.fork_policy!r} is not one of {', '.join(FORK_POLICIES)}"
            )
        if self.max_body_bytes < 1024:
            raise ConfigError("webhooks.max_body_bytes must be at least 1024")


@dataclass(frozen=True)
class ReportSettings:
    """How hard the reporter tries before putting an event back or giving up."""

    attempts: int = 5  # HTTP attempts per forge call before the event is requeued
    backoff_initial: Seconds = Seconds(0.5)
    backoff_max: Seconds = Seconds(30)
    request_timeout: Seconds = Seconds(20)
    give_up_after: Seconds = Seconds(24 * 3600)  # event age after which it is dropped with a log line
    log_tail_lines: int = 50


@dataclass(frozen=True)
class IntegrationSettings:
    """Everything ``solstice-integration serve`` needs."""

    github: GitHubSettings = GitHubSettings()
    forgejo: ForgejoSettings = ForgejoSettings()
    webhooks: WebhookSettings = WebhookSettings()
    report: ReportSettings = ReportSettings()
    http: HttpLimits = HttpLimits()  # deadlines and the per-client connection cap (integration.httpserver)
    public_url: str = field(default="http://127.0.0.1:8080", metadata=_env("SOLSTICE_PUBLIC_URL"))
    listen: str = field(default="127.0.0.1:8081", metadata=_env("SOLSTICE_INTEGRATION_LISTEN"))
    # sqlite file path, or a postgresql:// DSN (multi-host: share dedupe between replicas)
    store: str = field(default="integration.sqlite", metadata=_env("SOLSTICE_INTEGRATION_STORE"))
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    queue_prefix: str = ""
    # The dashboard on this HTTP side (multi-host): on when dashboard.store_url names the orchestrators' store.
    dashboard: DashboardSettings = DashboardSettings()
