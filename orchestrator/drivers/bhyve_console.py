"""Capture a bhyve guest's serial console into a file, and read its tail.

The zone is configured with ``console=socket,/tmp/vm.com1`` (illumos.md
§6.3), so bhyve listens on ``<zonepath>/root/tmp/vm.com1``. What bhyve does
with that socket (illumos-gate ``usr/src/cmd/bhyve/common/uart_backend.c``):
it binds it when the device initialises, serves one client at a time (a
second connection is closed at once), and **drops** whatever the guest
writes while no client is connected; a client that leaves frees the slot.
A guest reboot restarts bhyve in the same zone, which binds the socket anew.

So one ``ConsoleCapture`` task per VM starts right before ``zoneadm boot``,
connects the moment the socket exists, appends everything to
``<state_dir>/<vm>/console.log``, and when the connection ends (guest
reboot, a dropped capture) connects again, noting the gap in the log. It
runs until the driver cancels it (stop/destroy/aclose); after an
orchestrator restart the driver starts one for each running VM it finds.
What is lost: the first firmware lines written before the first connect, and
whatever the guest prints between a disconnect and the reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TAIL_BYTES = 256 * 1024
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with its NUL
EAGER_SECONDS = 30.0  # poll for the socket every ``retry`` s this long after start or a disconnect
GAP_NOTE = b"\n[solstice: console capture re-attached; output in between is lost]\n"


class ConsoleCapture:
    """Copies ``socket_path`` into ``out`` for as long as it runs (see module docstring)."""

    def __init__(self, socket_path: Path, out: Path, retry: float = 0.02, max_retry: float = 0.5) -> None:
        self.socket_path = socket_path
        self.out = out
        self.retry = retry
        self.max_retry = max_retry
        self.connections = 0  # connections that carried output (the gap notes go between them)

    async def run(self) -> None:
        if len(str(self.socket_path).encode()) > SUN_PATH_MAX:
            log.error("console socket path is too long for AF_UNIX; no console capture "
                      "(shorten drivers.bhyve.zones_path)", extra={"fields": {"socket": str(self.socket_path)}})
            return
        loop = asyncio.get_running_loop()
        delay = self.retry
        eager_until = loop.time() + EAGER_SECONDS
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError:
                # Not there yet: right after boot (or a disconnect, e.g. a guest
                # reboot) look again at once - every late millisecond may lose
                # guest output; later, a VM that is gone is not worth a busy loop.
                await asyncio.sleep(self.retry if loop.time() < eager_until else self.max_retry)
                continue
            try:
                copied = await self._copy(reader)
            finally:
                writer.close()
                # Never swallow a cancellation here: the loop would go on and
                # the driver's stop/destroy would wait for it forever.
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            # A connection bhyve closed at once (another client holds the console):
            # back off instead of spinning; one that carried output resets the delay.
            delay = self.retry if copied else min(delay * 2, self.max_retry)
            if not copied:
                await asyncio.sleep(delay)
            eager_until = loop.time() + EAGER_SECONDS

    async def _copy(self, reader: asyncio.StreamReader) -> int:
        copied = 0
        with open(self.out, "ab") as f:
            while chunk := await reader.read(65536):
                if not copied:
                    self.connections += 1  # counted once it carries output: a refused one does not
                    if self.connections > 1:
                        f.write(GAP_NOTE)
                f.write(chunk)
                f.flush()
                copied += len(chunk)
        return copied


def tail_file(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` (``""`` if it does not exist); CRs dropped."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    text = data.decode(errors="replace").replace("\r", "")
    return "\n".join(text.splitlines()[-lines:])
