"""Settings of ``solstice serve``: one YAML file (optional), ``SOLSTICE_*`` overrides.

With no file at all the single node keeps everything under ``data_dir``
(SQLite state, queue and events, job logs, the local driver's runner
directories) and the local driver serves every ``runs_on`` label. A file may
restrict the labels, choose another driver (``drivers`` section, as in the
orchestrator's YAML) or send some labels to another driver
(``label_drivers``, see ``routing``)::

    data_dir: /var/lib/solstice
    listen: 0.0.0.0:8080
    public_url: https://ci.example.org
    labels: [illumos-stable, ubuntu-22.04]
    capacity: 2
    drivers:
      driver: local
    label_drivers:
      illumos-stable: bhyve   # with drivers.bhyve.images
    forgejo:
      url: https://codeberg.example
    webhooks:
      fork_policy: label
    admin:                       # AdminService is always on <data_dir>/admin.sock; for remote ciadm:
      listen: 0.0.0.0:50052
      tls_cert: /etc/solstice/admin.crt
      tls_key: /etc/solstice/admin.key

The variables operators script against keep fixed names: ``SOLSTICE_DATA_DIR``,
``SOLSTICE_LISTEN``, ``SOLSTICE_GRPC``, ``SOLSTICE_PUBLIC_URL``, the
admin ones (``SOLSTICE_ADMIN_*``, see ``orchestrator.admin.settings``) and the
forge ones (``SOLSTICE_GITHUB_*``, ``SOLSTICE_FORGEJO_*``, see
``integration.settings``).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Seconds
from common.errors import ConfigError
from common.files import private_dir, private_file
from common.workflow.limits import WorkflowLimits
from dashboard.settings import DashboardSettings
from integration.external.settings import ExternalSettings
from integration.greenness.settings import GreennessSettings
from integration.httpserver import HttpLimits
from integration.settings import (
    ForgejoSettings,
    GitHubSettings,
    IntegrationSettings,
    ReportSettings,
    WebhookSettings,
)
from orchestrator.admin.settings import AdminConfig
from orchestrator.artifacts.settings import ArtifactsConfig
from orchestrator.caches.settings import CachesConfig
from orchestrator.catalog import DriverConfig, LocalConfig
from orchestrator.logstore.settings import LogsConfig
from orchestrator.node.settings import (
    GrpcConfig,
    NodeConfig,
    NodeSettings,
    TimeoutConfig,
    TimerConfig,
    _default_host,
)
from orchestrator.secrets.settings import SecretsConfig

STATE_DB = "state.sqlite"
EVERY_LABEL = "*"  # what the node registers (and `ciadm hosts` shows) when it serves every label


def _env(name: str) -> dict[str, str]:
    return {"env": name}


def installed_runner_argv() -> tuple[str, ...]:
    """How to start ``solstice-runner run``: the script beside this interpreter, else on PATH, else ``-c``."""
    beside = Path(sys.executable).parent / "solstice-runner"
    if beside.exists():
        return (str(beside), "run")
    found = shutil.which("solstice-runner")
    if found:
        return (found, "run")
    return (sys.executable, "-c", "from runner.cli import main; main()", "run")


def split_address(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ``ConfigError`` naming ``what`` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``solstice serve`` needs; defaults run a working node with no file."""

    data_dir: Path = field(default=Path("~/.local/state/solstice").expanduser(), metadata=_env("SOLSTICE_DATA_DIR"))
    listen: str = field(default="127.0.0.1:8080", metadata=_env("SOLSTICE_LISTEN"))  # HTTP: webhooks, job pages
    grpc: str = field(default="127.0.0.1:50051", metadata=_env("SOLSTICE_GRPC"))  # runners only
    grpc_advertise: str = ""  # what runners dial; "" = the grpc address
    public_url: str = field(default="", metadata=_env("SOLSTICE_PUBLIC_URL"))  # "" = http://<listen>
    host: str = field(default_factory=_default_host)  # the node's name in `ciadm hosts`
    labels: tuple[str, ...] = ()  # runs_on labels served; empty = every label (local driver)
    label_drivers: dict[str, str] = field(default_factory=dict)  # label -> another driver than drivers.driver
    capacity: int = 4  # jobs at once
    shutdown_grace: Seconds = Seconds(30)  # Ctrl-C: running jobs get this long, then are requeued
    # `ciadm submit` of a local checkout (and webhooks naming a local clone URL): on for one machine
    allow_local_checkouts: bool = True
    github: GitHubSettings = GitHubSettings()
    forgejo: ForgejoSettings = ForgejoSettings()
    webhooks: WebhookSettings = WebhookSettings()
    report: ReportSettings = ReportSettings()
    http: HttpLimits = HttpLimits()  # the HTTP listener's deadlines and per-client connection cap
    external: ExternalSettings = ExternalSettings()  # out-of-tree CI: off until an allowlist is set
    greenness: GreennessSettings = GreennessSettings()  # last-green per queue, hooks: off until enabled
    admin: AdminConfig = AdminConfig()  # AdminService: <data_dir>/admin.sock, optional TLS listener
    workflow_limits: WorkflowLimits = WorkflowLimits()
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    timers: TimerConfig = field(default_factory=TimerConfig)
    drivers: DriverConfig = field(default_factory=DriverConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)  # key file default: <data_dir>/secrets.key
    # Logs stay in <data_dir>/logs (logs.archive: none unless set); limits, retention and keepalive apply.
    logs: LogsConfig = field(default_factory=LogsConfig)
    dashboard: DashboardSettings = DashboardSettings()  # the pages: sign-in required or not, cookies
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)  # size limits of uploaded artifacts
    caches: CachesConfig = field(default_factory=CachesConfig)  # bounds of the caches kept between runs

    def __post_init__(self) -> None:
        if self.dashboard.store_url:
            raise ConfigError("dashboard.store_url is a setting of solstice-integration; solstice serve shows "
                              "its own state")
        split_address(self.listen, "listen (SOLSTICE_LISTEN)")
        split_address(self.grpc, "grpc (SOLSTICE_GRPC)")
        if self.capacity < 1:
            raise ConfigError(f"capacity must be at least 1, not {self.capacity}")
        if EVERY_LABEL in self.labels:
            raise ConfigError("labels: leave the list empty to serve every label")
        for label, driver in self.label_drivers.items():
            if not isinstance(driver, str) or not driver:
                raise ConfigError(f"label_drivers.{label} must name a driver, not {driver!r}")

    @property
    def every_label(self) -> bool:
        """True when any ``runs_on`` label is run (no label list, the local driver)."""
        return not self.labels and self.drivers.driver == "local"

    def served_labels(self) -> tuple[str, ...]:
        """The labels the node registers: the list, the bhyve catalog, or ``*`` for every label."""
        if self.labels:
            return self.labels
        if self.drivers.driver == "local":
            return (EVERY_LABEL,)
        if self.drivers.driver == "bhyve" and self.drivers.bhyve.images:
            return tuple(sorted({*self.drivers.bhyve.images, *self.label_drivers}))
        raise ConfigError(f"the {self.drivers.driver} driver does not serve every label: list them in 'labels'")

    def http_url(self) -> str:
        """Where job pages are linked from forge statuses."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = split_address(self.listen, "listen")
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def driver_config(self) -> DriverConfig:
        """The drivers section with the local driver's defaults moved under ``data_dir``."""
        local = self.drivers.local
        default = LocalConfig()
        changes: dict[str, object] = {}
        if local.state_dir == default.state_dir:
            changes["state_dir"] = self.data_dir / "vms"
        if local.runner_argv == default.runner_argv:
            changes["runner_argv"] = installed_runner_argv()
        return dataclasses.replace(self.drivers, local=dataclasses.replace(local, **changes))  # type: ignore[arg-type]

    def driver_configs(self) -> dict[str, DriverConfig]:
        """Each driver in use by name, the default (``drivers.driver``) first.

        Drivers other than the default that keep state in the local section
        (``local``, test drivers) get a directory of their own beside it, so
        no two of them list the same VMs.
        """
        base = self.driver_config()
        configs = {base.driver: base}
        for name in self.label_drivers.values():
            if name not in configs:
                local = dataclasses.replace(base.local, state_dir=base.local.state_dir.with_name(
                    f"{base.local.state_dir.name}-{name}"))
                configs[name] = dataclasses.replace(base, driver=name, local=local)
        return configs

    def store_url(self) -> str:
        """The state store: ``state.sqlite`` in the data directory."""
        return f"sqlite:///{self.data_dir.resolve() / STATE_DB}"

    def prepared_store_url(self) -> str:
        """``store_url`` with the data directory (0700) and the database file (0600) made private first."""
        private_dir(self.data_dir)
        private_file(self.data_dir / STATE_DB)
        return self.store_url()

    def node_settings(self) -> NodeSettings:
        """The embedded orchestrator node's settings."""
        return NodeSettings(
            store_url=self.store_url(),
            amqp_url="",
            data_dir=self.data_dir,
            allow_local_checkouts=self.allow_local_checkouts,
            node=NodeConfig(host=self.host, labels=self.served_labels(), capacity=self.capacity),
            timeouts=self.timeouts,
            timers=dataclasses.replace(self.timers, shutdown_grace=self.shutdown_grace),
            grpc=GrpcConfig(listen=self.grpc, advertise=self.grpc_advertise),
            admin=self.admin,
            drivers=self.driver_config(),
            secrets=self.secrets,
            logs=dataclasses.replace(self.logs, archive=self.logs.archive_or("none")),
            artifacts=self.artifacts,
            caches=self.caches,
        )

    def integration_settings(self) -> IntegrationSettings:
        """The embedded integration's settings (its dedupe store lives in ``data_dir``)."""
        webhooks = dataclasses.replace(self.webhooks, allow_local_checkouts=self.allow_local_checkouts)
        return IntegrationSettings(
            github=self.github, forgejo=self.forgejo, webhooks=webhooks, report=self.report, http=self.http,
            workflow_limits=self.workflow_limits, external=self.external, greenness=self.greenness,
            public_url=self.http_url(), listen=self.listen, store=str(self.data_dir / "integration.sqlite"),
        )
