"""``AdminConfig``: the management listeners of AdminService (the ``admin`` section).

AdminService is never served where runners dial (``grpc.listen``). It has:

* a Unix socket, always: ``admin.socket`` or ``<data_dir>/admin.sock``, mode
  0600; callers whose uid is root or the node's own need no token there;
* optionally a TCP address for remote operators (``admin.listen``), with TLS
  (``tls_cert``/``tls_key``; ``tls_client_ca`` turns on mutual TLS) and a
  token on every call. Plain-text TCP is refused: a token must not cross a
  network in clear.

YAML (or ``SOLSTICE_ADMIN_*``)::

    admin:
      listen: 0.0.0.0:50052
      tls_cert: /etc/solstice/admin.crt
      tls_key: /etc/solstice/admin.key
      tls_client_ca: /etc/solstice/operators-ca.crt   # optional: mutual TLS
      trusted_submit: false
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError

SOCKET_NAME = "admin.sock"


@dataclass(frozen=True)
class AdminConfig:
    """Where AdminService listens and what a submitted job may be."""

    socket: Path | None = None  # the local Unix socket; None = <data_dir>/admin.sock
    listen: str = ""  # HOST:PORT for remote operators (TLS + token); "" = the socket only
    tls_cert: Path | None = None  # PEM certificate chain of the TCP listener
    tls_key: Path | None = None  # its private key (PEM)
    tls_client_ca: Path | None = None  # set: clients must show a certificate signed by this CA (mutual TLS)
    trusted_submit: bool = False  # admin-role callers may Submit `trusted` jobs (they receive secrets)

    def __post_init__(self) -> None:
        if self.listen:
            host, sep, port = self.listen.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ConfigError(f"admin.listen {self.listen!r} is not HOST:PORT")
            if self.tls_cert is None or self.tls_key is None:
                raise ConfigError("admin.listen needs admin.tls_cert and admin.tls_key: operator tokens "
                                  "must not cross a network in clear text")
        elif self.tls_client_ca is not None or self.tls_cert is not None:
            raise ConfigError("admin.tls_* settings need admin.listen (the TCP address they secure)")

    def socket_path(self, data_dir: Path) -> Path:
        """The Unix socket: the configured one, else ``admin.sock`` in ``data_dir``."""
        return (self.socket or data_dir / SOCKET_NAME).expanduser().absolute()
