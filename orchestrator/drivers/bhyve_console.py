"""Capture a bhyve guest's serial console into a file, and read its tail.

The zone is configured with ``console=socket,/tmp/vm.com1,wait`` (illumos.md §6.3),
so bhyve listens on ``<zonepath>/root/tmp/vm.com1``. One ``ConsoleCapture``
task per VM connects as soon as the socket appears and appends everything to
``<state_dir>/<vm>/console.log`` until bhyve closes it or the task is
cancelled (stop/destroy/aclose). Whether bhyve buffers output written before
a client connects is UNCONFIRMED, so the socket is configured with ``,wait``:
bhyve holds the guest until this capture is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TAIL_BYTES = 256 * 1024


async def capture_console(socket_path: Path, out: Path, connect_within: float, retry: float = 0.05) -> None:
    """Connect to ``socket_path`` (retrying for ``connect_within`` s) and copy it to ``out``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_within
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket_path))
            break
        except OSError:
            if loop.time() > deadline:
                log.warning("console socket never appeared", extra={"fields": {"socket": str(socket_path)}})
                return
            await asyncio.sleep(retry)
    try:
        with open(out, "ab") as f:
            while chunk := await reader.read(65536):
                f.write(chunk)
                f.flush()
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()


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
