"""``ciadm secret set`` on a terminal: the value is asked twice and never echoed, never taken from argv."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

VALUE = "typed-secret-value-4u"
CIADM = str(Path(sys.executable).parent / "ciadm")


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {needle!r}; got {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"the terminal closed before {needle!r}; got {bytes(seen)!r}")
            seen += chunk


def test_the_prompt_does_not_echo_and_asks_for_confirmation():
    # Nothing listens on port 1: after reading the value, ciadm fails to connect (exit 3).
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal, as in an operator's shell
        os.execv(CIADM, [CIADM, "--orchestrator", "127.0.0.1:1", "--timeout", "5",
                         "secret", "set", "github/acme/widgets", "DEPLOY_KEY"])
    seen = bytearray()
    try:
        _read_until(fd, b"Secret value:", seen)
        os.write(fd, VALUE.encode() + b"\n")
        _read_until(fd, b"Repeat for confirmation:", seen)
        os.write(fd, VALUE.encode() + b"\n")
        _read_until(fd, b"$SOLSTICE_ORCHESTRATOR)", seen)  # the end of the one ERROR: line
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 3
    assert b"cannot reach the orchestrator at 127.0.0.1:1" in seen
    assert VALUE.encode() not in seen  # typed, but never shown
