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
from common.workflow.limits import WorkflowLimits
from dashboard.settings import DashboardSettings
from integration.external.settings import ExternalSettings
from integration.greenness.settings import GreennessSettings
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
    # A build being handled (workflow read + publish) is leased this long;
    # if its process dies meanwhile, any replica builds it once the lease
    # ends, under the same job ids. Longer than handling_deadline plus the
    # publisher's publish_timeout (60 s).
    build_lease: Seconds = Seconds(120)
    # A new head of a pull request cancels the jobs of its older heads.
    cancel_superseded: bool = True
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
        if self.build_lease <= self.handling_deadline:
            raise ConfigError("webhooks.build_lease must be longer than webhooks.handling_deadline")


@dataclass(frozen=True)
class ReportSettings:
    """How hard the reporter tries before putting an event back or giving up."""

    attempts: int = 5  # HTTP attempts per forge call before the event is requeued
    backoff_initial: Seconds = Seconds(0.5)
    backoff_max: Seconds = Seconds(30)
    request_timeout: Seconds = Seconds(20)
    # The longest Retry-After / rate-limit reset waited out inside one call;
    # a longer one puts the event back (or the build off) until then.
    max_wait: Seconds = Seconds(60)
    give_up_after: Seconds = Seconds(24 * 3600)  # event age after which it is dropped with a log line
    # One replica reports a job at a time: its lock in the store lasts this
    # long, and every forge call made under it ends before.
    lock_lease: Seconds = Seconds(300)
    log_tail_lines: int = 50

    def __post_init__(self) -> None:
        if self.lock_lease <= self.max_wait + self.request_timeout:
            raise ConfigError("report.lock_lease must be longer than report.max_wait + report.request_timeout")


@dataclass(frozen=True)
class AdminLinkSettings:
    """Multi-host: the orchestrator AdminService that carries out cancels and re-runs
    (``integration.admin_link``). ``address``: ``HOST:PORT`` of a node's admin TLS
    listener, or its Unix socket; ``token``: an operator token with the ``operate``
    role. Without an address, cancel and re-run requests are only logged."""

    address: str = field(default="", metadata=_env("SOLSTICE_INTEGRATION_ADMIN_ADDRESS"))
    token: str = field(default="", metadata=_env("SOLSTICE_INTEGRATION_ADMIN_TOKEN"), repr=False)
    tls_ca: Path | None = None  # trust this CA for the listener (the system's by default)
    tls_cert: Path | None = None  # mutual TLS: this client certificate...
    tls_key: Path | None = None  # ...and its key
    timeout: Seconds = Seconds(10)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("admin.tls_cert and admin.tls_key go together")


@dataclass(frozen=True)
class IntegrationSettings:
    """Everything ``solstice-integration serve`` needs."""

    github: GitHubSettings = GitHubSettings()
    forgejo: ForgejoSettings = ForgejoSettings()
    webhooks: WebhookSettings = WebhookSettings()
    report: ReportSettings = ReportSettings()
    admin: AdminLinkSettings = AdminLinkSettings()  # multi-host cancel / re-run (solstice-integration serve)
    http: HttpLimits = HttpLimits()  # deadlines and the per-client connection cap (integration.httpserver)
    workflow_limits: WorkflowLimits = WorkflowLimits()
    external: ExternalSettings = ExternalSettings()  # out-of-tree CI (integration.external); off by default
    greenness: GreennessSettings = GreennessSettings()  # last-green per queue (integration.greenness); off by default
    public_url: str = field(default="http://127.0.0.1:8080", metadata=_env("SOLSTICE_PUBLIC_URL"))
    listen: str = field(default="127.0.0.1:8081", metadata=_env("SOLSTICE_INTEGRATION_LISTEN"))
    # sqlite file path, or a postgresql:// DSN (multi-host: share dedupe between replicas)
    store: str = field(default="integration.sqlite", metadata=_env("SOLSTICE_INTEGRATION_STORE"))
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    queue_prefix: str = ""
    # The dashboard on this HTTP side (multi-host): on when dashboard.store_url names the orchestrators' store.
    dashboard: DashboardSettings = DashboardSettings()
