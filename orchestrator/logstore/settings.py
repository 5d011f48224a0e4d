"""``LogsConfig``: how much a job may log, where job logs are archived, how nodes read
each other's, how long logs are kept.

YAML (the ``logs`` section; or ``SOLSTICE_LOGS_*``)::

    logs:
      max_bytes: 256M            # output one job attempt may log (N[KMGT]); past it one truncation line
      label_max_bytes: {big-builds: 1G}
      fail_at_limit: false       # past the limit the job goes on unlogged (true: it ends failed)
      archive: database          # database (the state store's: PostgreSQL in a cluster), s3, or none;
                                 # default: database on a cluster node, none on the single node
      archive_interval: 5s       # a running attempt's new lines reach the archive this often
      peer_listen: 0.0.0.0:50053 # other nodes read the logs this node holds here
      peer_advertise: 10.0.0.5:50053
      peer_key_file: /etc/solstice/peer.key   # the same on every node (>= 32 bytes, mode 0600)
      retention: 90d             # job records and logs that finished longer ago are deleted
      gc_interval: 1h
      s3:
        bucket: solstice-logs
        endpoint_url: https://s3.example.org   # "" = AWS
        region: us-east-1
        prefix: logs/
        access_key_id: ...
        secret_access_key_file: /etc/solstice/s3.secret

The single node keeps its logs in its files (``archive: none``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Seconds
from common.errors import ConfigError
from orchestrator.catalog import size_bytes

ARCHIVES = ("database", "s3", "none")
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class S3Config:
    """S3-compatible object storage for archived log chunks (``logs.archive: s3``)."""

    bucket: str = ""
    endpoint_url: str = ""  # "" = AWS's endpoint for the region
    region: str = "us-east-1"
    prefix: str = "solstice-logs/"
    access_key_id: str = ""  # "" = the usual AWS credential chain (environment, instance role)
    secret_access_key_file: Path | None = None

    def secret_access_key(self) -> str:
        if self.secret_access_key_file is None:
            return ""
        return _private_text(self.secret_access_key_file, "logs.s3.secret_access_key_file", 1)


@dataclass(frozen=True)
class LogsConfig:
    """See the module docstring."""

    max_bytes: str = "256M"
    label_max_bytes: dict[str, str] = field(default_factory=dict)
    fail_at_limit: bool = False
    archive: str = ""  # "" = database on a cluster node, none on the single node (``solstice serve``)
    archive_interval: Seconds = Seconds(5)
    peer_listen: str = ""  # HOST:PORT; "" = this node serves no peer reads
    peer_advertise: str = ""  # what other nodes dial; "" = the listen address
    peer_key_file: Path | None = None
    peer_token_ttl: Seconds = Seconds(300)
    keepalive: Seconds = Seconds(5)  # a followed log with nothing new sends a keepalive this often
    retention: Seconds = Seconds(90 * 86400)
    gc_interval: Seconds = Seconds(3600)
    s3: S3Config = field(default_factory=S3Config)

    def __post_init__(self) -> None:
        for where, text in (("logs.max_bytes", self.max_bytes),
                            *((f"logs.label_max_bytes.{k}", v) for k, v in self.label_max_bytes.items())):
            try:
                size_bytes(str(text))
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
        if self.archive and self.archive not in ARCHIVES:
            raise ConfigError(f"logs.archive must be one of {', '.join(ARCHIVES)}, not {self.archive!r}")
        if self.archive == "s3" and not self.s3.bucket:
            raise ConfigError("logs.archive: s3 needs logs.s3.bucket")
        for name in ("peer_listen", "peer_advertise"):
            value = getattr(self, name)
            if value:
                host, sep, port = value.rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                    raise ConfigError(f"logs.{name} {value!r} is not HOST:PORT")
        if self.peer_listen and self.peer_key_file is None:
            raise ConfigError("logs.peer_listen needs logs.peer_key_file: other nodes prove who they are "
                              "with tokens signed by that key")

    def limit_for(self, label: str) -> int:
        """Bytes a job with ``runs_on == label`` may log."""
        return size_bytes(str(self.label_max_bytes.get(label, self.max_bytes)))

    def archive_or(self, default: str) -> str:
        """The archive to use: the configured one, else ``default`` (the kind of node decides)."""
        return self.archive or default

    def peer_key(self) -> bytes | None:
        """The cluster's peer key, or None when none is configured."""
        if self.peer_key_file is None:
            return None
        return _private_text(self.peer_key_file, "logs.peer_key_file", MIN_KEY_BYTES).encode()


def _private_text(path: Path, setting: str, least: int) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {setting} {path}: {getattr(err, 'strerror', None) or err}") from err
    if mode & 0o077:
        raise ConfigError(f"{setting} {path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}")
    if len(text) < least:
        raise ConfigError(f"{setting} {path} must hold at least {least} characters")
    return text


def write_key(path: Path) -> None:
    """Make a new peer key file (for ``solstice-orchestrator`` set-up and tests)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(os.urandom(32).hex() + "\n")
