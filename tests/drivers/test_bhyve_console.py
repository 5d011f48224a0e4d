"""ConsoleCapture against a socket that behaves like bhyve's (one client, rebinding, refusing)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from orchestrator.drivers.bhyve_console import GAP_NOTE, ConsoleCapture
from tests.waiting import async_wait_until


async def test_capture_follows_rebinds_and_notes_only_real_gaps(tmp_path: Path):
    sock = Path(tempfile.mkdtemp(prefix="cc", dir="/tmp")) / "vm.com1"
    out = tmp_path / "console.log"
    refuse = True

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if refuse:  # another client holds the console: bhyve closes us at once
            writer.close()
            return
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()  # the guest reboots: bhyve goes away

    server = await asyncio.start_unix_server(serve, path=str(sock))
    capture = ConsoleCapture(sock, out, retry=0.01, max_retry=0.05)
    task = asyncio.create_task(capture.run())
    try:
        await asyncio.sleep(0.2)  # refused connections: nothing written, no gap notes
        assert not out.exists() or out.read_bytes() == b""
        refuse = False
        await async_wait_until(lambda: out.exists() and out.read_bytes().count(b"hello") >= 2, what="two sessions")
        data = out.read_bytes()
        assert data.startswith(b"hello\n") and GAP_NOTE in data
        assert capture.connections >= 2
    finally:
        task.cancel()  # whatever it is awaiting: a cancelled capture ends
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        server.close()
        await server.wait_closed()
        sock.unlink(missing_ok=True)
        sock.parent.rmdir()


async def test_cancelling_a_capture_ends_it_wherever_it_waits(tmp_path: Path):
    """Cancelled while connecting, reading or closing: it ends (the driver's stop awaits it)."""
    sock = Path(tempfile.mkdtemp(prefix="cc", dir="/tmp")) / "vm.com1"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(sock))
    try:
        for delay in (0, 0.001, 0.003, 0.01, 0.03):  # land the cancel at different awaits
            task = asyncio.create_task(ConsoleCapture(sock, tmp_path / "c.log", retry=0.001).run())
            await asyncio.sleep(delay)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, f"a capture cancelled after {delay}s went on"
    finally:
        server.close()
        sock.unlink(missing_ok=True)
        sock.parent.rmdir()


async def test_a_socket_path_too_long_for_af_unix_gives_up_with_a_log(tmp_path: Path, caplog):
    capture = ConsoleCapture(Path("/" + "x" * 120), tmp_path / "console.log")
    await asyncio.wait_for(capture.run(), 5)
    assert "too long for AF_UNIX" in caplog.text
