"""Settings of out-of-tree CI (section ``external`` of the integration's settings).

Off by default: with no ``allowlist`` nothing is relayed and no results are
taken. The secrets keep fixed environment names wherever the section is
nested: ``SOLSTICE_RELAY_WEBHOOK_SECRET`` (signs the webhooks sent to
Forgejo downstreams) and ``SOLSTICE_RESULTS_INGEST_TOKEN`` (the header token
of the results write path when the dashboard is served apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.config import Seconds
from common.errors import ConfigError

GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
MIN_TOKEN_LENGTH = 32


@dataclass(frozen=True)
class ExternalSettings:
    """The allowlist, the relay's retries, the results API's checks and limits."""

    # A YAML file path or an https URL (a file in the upstream's repository, say); "" = out-of-tree CI off.
    allowlist: str = ""
    allowlist_refresh: Seconds = Seconds(300)  # how often the allowlist is read again (a file: checked for change)
    # Plain http for the allowlist URL and the Forgejo downstreams' webhook URLs (tests, a proxy on this host).
    allow_http: bool = False
    # What a downstream's GitHub workflow listens for: on: repository_dispatch: types: [<event_type>].
    event_type: str = "solstice-upstream"
    # Dispatch retries: first after dispatch_backoff, doubling up to dispatch_backoff_max, at most
    # dispatch_attempts tries, then recorded failed. A downstream is unhealthy after unhealthy_after
    # failed tries in a row (one success makes it healthy again).
    dispatch_attempts: int = 6
    dispatch_backoff: Seconds = Seconds(10)
    dispatch_backoff_max: Seconds = Seconds(600)
    unhealthy_after: int = 3
    dispatch_retention: Seconds = Seconds(3 * 24 * 3600)  # how long a report may name a dispatch
    results_retention: Seconds = Seconds(90 * 24 * 3600)
    webhook_secret: str = field(default="", metadata={"env": "SOLSTICE_RELAY_WEBHOOK_SECRET"}, repr=False)
    # The results API: OIDC tokens of this issuer, for this audience ("" = the server's public URL).
    oidc_issuer: str = GITHUB_ACTIONS_ISSUER
    oidc_jwks_url: str = ""  # "" = <issuer>/.well-known/jwks (GitHub Actions' location)
    oidc_audience: str = ""
    oidc_leeway: Seconds = Seconds(60)
    jwks_max_age: Seconds = Seconds(3600)
    jwks_refresh_min_interval: Seconds = Seconds(60)  # the bound on refreshes an unknown kid may cause
    max_body_bytes: int = 2 * 1024 * 1024
    rate_per_minute: float = 60.0  # per verified repository, shared by every node through the store
    rate_burst: int = 20
    quota_per_repository: int = 10000  # results kept per downstream repository
    # The dashboard served apart: the relay posts each accepted result there with the header token.
    results_forward_url: str = ""
    ingest_token: str = field(default="", metadata={"env": "SOLSTICE_RESULTS_INGEST_TOKEN"}, repr=False)

    def __post_init__(self) -> None:
        if self.dispatch_attempts < 1:
            raise ConfigError("external.dispatch_attempts must be at least 1")
        if self.unhealthy_after < 1:
            raise ConfigError("external.unhealthy_after must be at least 1")
        if not 1024 <= self.max_body_bytes <= 64 * 1024 * 1024:
            raise ConfigError("external.max_body_bytes must be between 1024 and 64 MiB")
        if not self.rate_per_minute > 0 or self.rate_burst < 1:
            raise ConfigError("external.rate_per_minute must be more than 0 and external.rate_burst at least 1")
        if self.quota_per_repository < 1:
            raise ConfigError("external.quota_per_repository must be at least 1")
        if not self.oidc_issuer.startswith("https://") and not self.allow_http:
            raise ConfigError(f"external.oidc_issuer {self.oidc_issuer!r} must be an https URL")
        if self.ingest_token and len(self.ingest_token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"SOLSTICE_RESULTS_INGEST_TOKEN must be at least {MIN_TOKEN_LENGTH} characters")
        if self.results_forward_url and not self.ingest_token:
            raise ConfigError("external.results_forward_url needs SOLSTICE_RESULTS_INGEST_TOKEN (the dashboard's "
                              "token for the results write path)")
        if not 1 <= len(self.event_type) <= 100:
            raise ConfigError("external.event_type must be 1 to 100 characters (GitHub's limit)")

    @property
    def relays(self) -> bool:
        """True when an allowlist is configured: upstream events are relayed and results taken."""
        return bool(self.allowlist)

    @property
    def ingests(self) -> bool:
        """True when this server takes results forwarded by a relay (the dashboard served apart)."""
        return bool(self.ingest_token) and not self.results_forward_url

    def jwks_url(self) -> str:
        return self.oidc_jwks_url or self.oidc_issuer.rstrip("/") + "/.well-known/jwks"
