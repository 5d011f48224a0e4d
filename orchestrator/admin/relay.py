"""The public admin Unix socket: it tells callers apart by uid and relays their bytes.

gRPC does not show a servicer the uid of a Unix-socket peer, so the public
socket is served here: each connection's peer uid is read
(``peercred.peer_uid``) and the connection is relayed, byte for byte, to one
of two private gRPC sockets - the *trusted* one (root and the node's own
user: no token needed) or the *token* one (anyone else: a token decides). The
private sockets live in a 0700 directory that only those two users can enter.

The public socket is bound, made 0600 and only then listened on, so there is
no moment where another user could connect through a looser mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Collection
from pathlib import Path

from common.errors import SolsticeError
from common.streams import Connection, StreamRelay
from orchestrator.admin.peercred import peer_uid

log = logging.getLogger(__name__)
# sun_path holds 104 bytes on macOS/BSD, 108 on Linux and illumos (with the NUL).
MAX_SOCKET_PATH = 103


class AdminListenError(SolsticeError):
    """A management listener cannot be served (path too long or taken, bad TLS files, port in use)."""


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise AdminListenError(f"the socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
                         "choose a shorter data directory or admin.socket")


def clear_stale(path: Path) -> None:
    """Remove a socket file left by a process that died; refuse one that answers, or a non-socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AdminListenError(f"{path} exists and is not a socket; remove it or choose another admin.socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: a leftover
        return
    finally:
        probe.close()
    raise AdminListenError(f"another process serves {path}; is a node already running with this data directory?")


def listen_private(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` with mode 0600, made so before anyone can connect."""
    check_socket_path(path)
    clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)  # before listen(): until then a connect is refused
        sock.listen(64)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise AdminListenError(f"cannot listen on {path}: {err.strerror or err}") from err
    return sock


class PeerRelay(StreamRelay):
    """Serves ``path``; relays trusted uids' connections to ``trusted``, the others' to ``token``."""

    def __init__(self, path: Path, trusted: Path, token: Path, trusted_uids: Collection[int]) -> None:
        super().__init__()
        self.path = path
        self.trusted = trusted
        self.token = token
        self.trusted_uids = frozenset(trusted_uids)
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        sock = listen_private(self.path)
        self._inode = os.stat(self.path).st_ino
        self._server = await asyncio.start_unix_server(self.accept, sock=sock)

    async def stop(self) -> None:
        """Stop accepting, cut the relayed connections, remove the socket file (if still ours)."""
        if self._server is None:
            return
        self._server.close()
        await self.cut()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    async def upstream(self, writer: asyncio.StreamWriter) -> Connection | None:
        uid = peer_uid(writer.get_extra_info("socket"))
        target = self.trusted if uid is not None and uid in self.trusted_uids else self.token
        try:
            return await asyncio.open_unix_connection(str(target))
        except OSError as err:
            log.error("cannot relay an admin connection to %s: %s", target, err)
            return None
