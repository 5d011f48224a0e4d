"""Settings of one orchestrator node (``solstice-orchestrator serve``).

Loaded with ``common.config.load_config``: dataclass defaults, then the YAML
file, then ``SOLSTICE_*`` variables (``node.host`` -> ``SOLSTICE_NODE_HOST``).
Example (docs/orchestrator.md has the full list)::

    store_url: postgresql://solstice@db/solstice
    amqp_url: amqp://solstice:secret@mq/solstice
    node:
      host: illumos-a
      labels: [illumos-stable, illumos-lts]
      capacity: 8
      label_limits: {illumos-lts: 2}
    grpc:
      listen: 0.0.0.0:50051
      advertise: 10.0.0.5:50051
    admin:                      # AdminService: <data_dir>/admin.sock, and for remote operators:
      listen: 10.0.0.5:50052
      tls_cert: /etc/solstice/admin.crt
      tls_key: /etc/solstice/admin.key
    drivers:
      driver: bhyve
    logs:                       # orchestrator.logstore.settings: archive, peer reads, retention
      peer_listen: 0.0.0.0:50053
      peer_advertise: 10.0.0.5:50053
      peer_key_file: /etc/solstice/peer.key
    metrics:
      listen: 127.0.0.1:9464    # GET /metrics for Prometheus (off when empty)
    artifacts:
      max_file_bytes: 1G        # one file of a job's artifacts (0 = no limit)
      max_job_bytes: 4G         # all of one job attempt's artifacts
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Seconds
from common.errors import ConfigError
from orchestrator.admin.settings import AdminConfig
from orchestrator.artifacts.settings import ArtifactsConfig
from orchestrator.caches.settings import CachesConfig
from orchestrator.catalog import DriverConfig
from orchestrator.logstore.settings import LogsConfig
from orchestrator.secrets.settings import SecretsConfig


def _default_host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


@dataclass(frozen=True)
class NodeConfig:
    """Who this node is, what it serves and how much it runs at once."""

    host: str = field(default_factory=_default_host)
    labels: tuple[str, ...] = ()  # labels consumed; empty = the driver's catalog (bhyve images / local labels)
    capacity: int = 4  # concurrent VMs on this host
    label_limits: dict[str, int] = field(default_factory=dict)  # label -> at most this many at once
    max_waiting: int = 64  # jobs held while their `needs` run elsewhere (not counted against capacity)
    exit_when_drained: bool = False  # a drained node exits instead of idling

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ConfigError(f"node.host {self.host!r} must be a non-empty name without spaces")
        if self.capacity < 1:
            raise ConfigError(f"node.capacity must be at least 1, not {self.capacity}")
        for label, limit in self.label_limits.items():
            if not isinstance(limit, int) or limit < 0:
                raise ConfigError(f"node.label_limits.{label} must be a number >= 0, not {limit!r}")


@dataclass(frozen=True)
class TimeoutConfig:
    """Deadlines of each phase of a job; every one that trips ends the job ``errored``."""

    prepare: Seconds = Seconds(600)  # driver.prepare (clone, zonecfg, install)
    boot: Seconds = Seconds(120)  # driver.boot returning
    runner: Seconds = Seconds(300)  # the runner calling in after boot (drivers.boot_timeout if larger)
    job: Seconds = Seconds(3600)  # a job without its own timeout_seconds
    job_max: Seconds = Seconds(24 * 3600)  # a job asking for longer is refused (failed)
    job_margin: Seconds = Seconds(60)  # beyond the job timeout before the node gives up on the runner
    cancel_grace: Seconds = Seconds(30)  # a cancelled runner's time to report before teardown
    runner_silence: Seconds = Seconds(60)  # a running job's runner silent this long (died, hung) ends errored
    teardown: Seconds = Seconds(600)  # stop + destroy


@dataclass(frozen=True)
class TimerConfig:
    """How often the node's periodic tasks run."""

    heartbeat: Seconds = Seconds(5)
    stale_after: Seconds = Seconds(30)  # a host silent this long has its jobs requeued
    sweep: Seconds = Seconds(10)  # requeue_lapsed pass
    reconcile: Seconds = Seconds(60)  # orphan VM pass
    cancel_poll: Seconds = Seconds(1)  # look for jobs cancelled through another node
    needs_poll: Seconds = Seconds(1)  # re-check `needs` of held jobs
    needs_wait: Seconds = Seconds(3600)  # a job whose needs are unfinished this long after queueing fails
    max_attempts: int = 3  # attempts of a job before a lapsed host makes it errored
    shutdown_grace: Seconds = Seconds(600)  # SIGTERM: running jobs get this long to finish


@dataclass(frozen=True)
class GrpcConfig:
    """The runners' gRPC server (RunnerService only: AdminService listens apart, see ``AdminConfig``).

    Runners in VMs reach the node at ``advertise``; every call needs its job's token.
    """

    listen: str = "127.0.0.1:50051"
    advertise: str = ""  # what VMs dial; "" = the listen address
    token_key_file: Path | None = None  # HMAC key of runner tokens; None = a random key per process
    # Least lifetime of a runner token; each attempt's token lives at least its
    # job timeout plus every phase around it (lifecycle.token_lifetime).
    token_ttl: Seconds = Seconds(6 * 3600)

    def split(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"grpc.listen {self.listen!r} is not HOST:PORT")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class MetricsConfig:
    """``/metrics`` of the node (Prometheus): off until ``listen`` names an address."""

    listen: str = ""  # HOST:PORT, e.g. 127.0.0.1:9464; "" = no metrics listener

    def split(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"metrics.listen {self.listen!r} is not HOST:PORT")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class NodeSettings:
    """Everything ``solstice-orchestrator serve`` needs."""

    store_url: str = "postgresql://postgres@127.0.0.1:5432/solstice"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    queue_prefix: str = ""  # share a broker between deployments (and tests)
    publish_timeout: Seconds = Seconds(60)  # a publish not confirmed this long fails (the outbox retries it)
    data_dir: Path = Path("~/.local/state/solstice/node").expanduser()  # job logs and admin.sock live here
    # AdminService.Submit takes local paths and file:// clone URLs only when on:
    # a job of another host's checkout would read this host's files.
    allow_local_checkouts: bool = False
    node: NodeConfig = field(default_factory=NodeConfig)
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    timers: TimerConfig = field(default_factory=TimerConfig)
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    drivers: DriverConfig = field(default_factory=DriverConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)  # output limits, archive, peer reads, retention
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)  # size limits of uploaded artifacts
    caches: CachesConfig = field(default_factory=CachesConfig)  # bounds of the caches kept between runs

    def __post_init__(self) -> None:
        if self.metrics.listen:
            self.metrics.split()

    def token_key(self) -> bytes:
        """The runner-token key: from ``grpc.token_key_file`` or fresh random bytes."""
        path = self.grpc.token_key_file
        if path is None:
            return os.urandom(32)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            key = path.read_bytes().strip()
        except OSError as err:
            raise ConfigError(f"cannot read grpc.token_key_file {path}: {err.strerror}") from err
        if mode & 0o077:
            # Whoever reads it can mint any job's runner token.
            raise ConfigError(f"grpc.token_key_file {path} is readable by other users (mode {mode:04o}); "
                              f"run: chmod 600 {path}")
        if len(key) < 32:
            raise ConfigError(f"grpc.token_key_file {path} must hold at least 32 bytes")
        return key
