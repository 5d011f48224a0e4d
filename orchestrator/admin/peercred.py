"""The uid of the process at the other end of a connected Unix socket.

Linux answers ``SO_PEERCRED``; illumos (and Solaris) ``getpeerucred(3C)``;
macOS and the BSDs ``getpeereid(3)``. None when the platform gives no answer:
the caller then treats the peer as unknown (it needs a token), never as trusted.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import sys

log = logging.getLogger(__name__)


def peer_uid(sock: socket.socket) -> int | None:
    """The effective uid of ``sock``'s peer, or None if it cannot be told."""
    try:
        if hasattr(socket, "SO_PEERCRED"):
            _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                  struct.calcsize("3i")))
            return uid
        if sys.platform.startswith("sunos"):
            return _getpeerucred(sock.fileno())
        return _getpeereid(sock.fileno())
    except (OSError, AttributeError) as err:
        log.warning("cannot tell the uid of an admin socket peer: %s", err)
        return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _getpeerucred(fd: int) -> int | None:
    libc = _libc()
    libc.getpeerucred.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    libc.ucred_geteuid.argtypes = [ctypes.c_void_p]
    libc.ucred_geteuid.restype = ctypes.c_int  # uid_t; -1 on error
    libc.ucred_free.argtypes = [ctypes.c_void_p]
    cred = ctypes.c_void_p(None)  # NULL: getpeerucred allocates
    if libc.getpeerucred(fd, ctypes.byref(cred)) != 0:
        raise OSError(ctypes.get_errno(), "getpeerucred failed")
    try:
        uid = libc.ucred_geteuid(cred)
    finally:
        libc.ucred_free(cred)
    return None if uid < 0 else uid


def _getpeereid(fd: int) -> int | None:
    libc = _libc()
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if libc.getpeereid(fd, ctypes.byref(uid), ctypes.byref(gid)) != 0:
        raise OSError(ctypes.get_errno(), "getpeereid failed")
    return uid.value
