"""Which orchestrator ``ciadm`` talks to, and with what credentials.

Settings come from, in rising priority: ``~/.config/solstice/ciadm.yaml``
(``$XDG_CONFIG_HOME`` respected), ``SOLSTICE_*`` variables, then flags::

    orchestrator: /var/lib/solstice/admin.sock   # or unix:PATH, or HOST:PORT (TLS)
    token: solstice_0123456789ab_...             # SOLSTICE_TOKEN / --token
    tls_ca: ~/.config/solstice/ca.crt            # SOLSTICE_TLS_CA / --tls-ca: trust this CA
    tls_cert: ~/.config/solstice/me.crt          # SOLSTICE_TLS_CERT: mutual TLS
    tls_key: ~/.config/solstice/me.key           # SOLSTICE_TLS_KEY

With no address at all, ciadm uses the Unix socket of a node on this host:
``$SOLSTICE_DATA_DIR/admin.sock``, else the default data directories of
``solstice serve`` and ``solstice-orchestrator serve``. A file that holds a
token must be private (mode 0600): ciadm refuses one others can read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from common.config import load_config, read_yaml
from common.errors import ConfigError, SolsticeError

ENV_ORCHESTRATOR = "SOLSTICE_ORCHESTRATOR"
SOCKET_NAME = "admin.sock"
DEFAULT_DATA_DIRS = (Path("~/.local/state/solstice"), Path("~/.local/state/solstice/node"))


class NoOrchestrator(SolsticeError):
    """No address was given and no local node's socket exists."""


def config_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = Path(env.get("XDG_CONFIG_HOME") or Path("~/.config").expanduser())
    return base / "solstice" / "ciadm.yaml"


@dataclass(frozen=True)
class CiadmSettings:
    """``ciadm.yaml`` / ``SOLSTICE_*`` / flags: see the module docstring."""

    orchestrator: str = ""  # "" = the local node's socket
    token: str = ""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The integration's HTTP address (last-green, hooks: ``ciadm.greenness``); SOLSTICE_INTEGRATION_URL.
    integration: str = field(default="", metadata={"env": "SOLSTICE_INTEGRATION_URL"})

    def __repr__(self) -> str:  # the token is a credential
        return f"CiadmSettings(orchestrator={self.orchestrator!r}, token={'***' if self.token else ''!r})"


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> CiadmSettings:
    """The settings of the file (if it exists) and the environment."""
    env = dict(os.environ) if env is None else env
    path = path or config_path(env)
    settings = load_config(CiadmSettings, path if path.exists() else None, env)
    if path.exists() and read_yaml(path).get("token"):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} holds a token and others can read it (mode {stat.S_IMODE(mode):04o}); "
                              f"run: chmod 600 {path}")
    return settings


def with_flags(settings: CiadmSettings, **flags: object) -> CiadmSettings:
    """``settings`` with the flags that were given (None = not given)."""
    return replace(settings, **{k: v for k, v in flags.items() if v is not None})  # type: ignore[arg-type]


def local_socket(env: dict[str, str] | None = None) -> Path:
    """The admin socket of a node on this host (``NoOrchestrator`` when there is none)."""
    env = dict(os.environ) if env is None else env
    if env.get("SOLSTICE_DATA_DIR"):
        return Path(env["SOLSTICE_DATA_DIR"]).expanduser().absolute() / SOCKET_NAME
    candidates = [d.expanduser() / SOCKET_NAME for d in DEFAULT_DATA_DIRS]
    for path in candidates:
        if path.exists():
            return path
    raise NoOrchestrator(f"no orchestrator socket at {candidates[0]}: is `solstice serve` running? "
                         f"(or set --orchestrator or ${ENV_ORCHESTRATOR}: a socket path or HOST:PORT)")


def grpc_target(address: str) -> tuple[str, bool]:
    """(what gRPC dials, whether it is a Unix socket) for a socket path, ``unix:PATH`` or ``HOST:PORT``."""
    if address.startswith("unix:"):
        path = address.removeprefix("unix:").removeprefix("//")
        return f"unix:{Path(path).expanduser().absolute()}", True
    if "/" in address or address.endswith(".sock"):
        return f"unix:{Path(address).expanduser().absolute()}", True
    return address, False


@dataclass(frozen=True)
class Target:
    """A resolved orchestrator: the gRPC address, TLS for TCP, the token to present."""

    address: str  # "unix:/abs/path" or "host:port"
    unix: bool
    token: str = ""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The integration's HTTP address (last-green, hooks: ``ciadm.greenness``); SOLSTICE_INTEGRATION_URL.
    integration: str = field(default="", metadata={"env": "SOLSTICE_INTEGRATION_URL"})

    def __repr__(self) -> str:
        return f"Target(address={self.address!r}, token={'***' if self.token else ''!r})"

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS for a TCP orchestrator: the CA to trust (the system's by default), a client certificate."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("a client certificate needs both --tls-cert and --tls-key")

        def read(path: Path | None, what: str) -> bytes | None:
            if path is None:
                return None
            try:
                return path.expanduser().read_bytes()
            except OSError as err:
                raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from err

        return grpc.ssl_channel_credentials(root_certificates=read(self.tls_ca, "the CA file"),
                                            private_key=read(self.tls_key, "the client key"),
                                            certificate_chain=read(self.tls_cert, "the client certificate"))


def resolve(settings: CiadmSettings, env: dict[str, str] | None = None) -> Target:
    """Where to connect: the configured address, else this host's node socket."""
    if settings.orchestrator:
        address, unix = grpc_target(settings.orchestrator)
    else:
        address, unix = f"unix:{local_socket(env)}", True
    return Target(address, unix, settings.token.strip(), settings.tls_ca, settings.tls_cert, settings.tls_key)
