"""The fake bhyve process of one running zone: the "guest" runs the runner.

Started by the fake ``zoneadm boot`` in its own session (so ``halt`` kills the
whole group). Like cloud-init, it reads the NoCloud seed the boot
materialised (``<zoneroot>/cloud-init/user-data``), writes its
``write_files`` into the guest's disk (``<zoneroot>/guest``) and runs its
``runcmd``; the image's one program, ``solstice-runner``, is started as
``config.json`` ``runner_argv`` says - by a ``runcmd`` naming it, or else by
the image's runner service once ``/etc/solstice/runner.env`` exists. The guest's console goes to the
``console=socket,PATH[,wait]`` socket if the zone has one; with ``wait`` the
guest starts only once a client is connected. Without ``wait``, output is
buffered until the first client connects and lost if the guest stops before
one does (real bhyve behaviour without a client is UNCONFIRMED). When the
runner exits the guest "powers off": bhyve exits and the zone drops back to
``installed`` by itself (illumos.md §1.3).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import yaml

from common.bootstrap import RUNNER_ENV_PATH
from tests.fakes.illumos import state as st
from tests.fakes.illumos.zoneadm import attr, to_installed


class Console:
    def __init__(self) -> None:
        self.buffer: list[bytes] = []
        self.clients: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()

    def write(self, data: bytes) -> None:
        if not self.clients:
            self.buffer.append(data)
            return
        for w in list(self.clients):
            try:
                w.write(data)
            except (ConnectionError, RuntimeError):
                self.clients.remove(w)

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for chunk in self.buffer:
            writer.write(chunk)
        self.buffer.clear()
        self.clients.append(writer)
        self.connected.set()
        try:
            await reader.read()  # until the client goes away
        except (ConnectionError, asyncio.CancelledError):
            pass
        if writer in self.clients:
            self.clients.remove(writer)

    def line(self, text: str) -> None:
        self.write(text.encode() + b"\r\n")


async def run(zone_name: str) -> int:
    base = st.root()
    state = st.read(base)
    zone = state["zones"][zone_name]
    zonepath = zone["config"]["zonepath"]
    root = st.host_path(zonepath, base) / "root"
    console = Console()
    server = None
    spec = attr(zone, "console") or "/dev/zconsole"
    if spec.startswith("socket,"):
        _, path, *opts = spec.split(",")
        sock = root / path.lstrip("/")
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(console.client, path=str(sock))
        if "wait" in opts:
            # ``,wait``: bhyve does not start the guest until a client connects (§6.3).
            await console.connected.wait()
    console.line(f"bhyve: {zone_name}: starting UEFI firmware")
    forever = asyncio.get_running_loop().create_future()
    try:
        if attr(zone, "bootdisk") is None:
            console.line("BdsDxe: No bootable option or device was found.")
            await forever
        config_path = base / "config.json"
        installed = json.loads(config_path.read_text()).get("runner_argv") if config_path.exists() else None
        guest = root / "guest"  # the guest's own disk; it goes away with the zone
        try:
            argv = cloud_init(root / "cloud-init", guest, installed, console)
        except (OSError, ValueError, yaml.YAMLError) as err:
            console.line(f"cloud-init: {err}")
            await forever
        if argv is None:
            await forever
        # A fresh guest: no bootstrap in its environment, only what cloud-init wrote.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLSTICE_RUNNER_")}
        env["SOLSTICE_RUNNER_DIR"] = str(guest)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=str(guest), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            console.write(chunk)
        code = await proc.wait()
        console.line(f"reboot: Power down (runner exit {code})")
        # Give a connected console reader the last lines before we vanish.
        for w in console.clients:
            try:
                await asyncio.wait_for(w.drain(), 1)
            except (ConnectionError, asyncio.TimeoutError):
                pass
        with st.locked(base) as s:
            z = s["zones"].get(zone_name)
            if z and z["state"] == "running" and z.get("vm_pid") == os.getpid():
                to_installed(s, zone_name)
        return 1  # bhyve exit 1 = guest poweroff
    finally:
        if server is not None:
            server.close()


def cloud_init(seed: Path, guest: Path, installed: list[str] | None, console: Console) -> list[str] | None:
    """Do what cloud-init does with the NoCloud seed: ``write_files`` into the
    guest, then return the argv of the first ``runcmd`` the image can run.

    The image's only program is ``solstice-runner`` (``installed`` is how it
    is started here); absolute guest paths in its arguments are mapped into
    ``guest``. Returns None (after saying why on the console) when nothing runs.
    """
    text = (seed / "user-data").read_text()
    if not text.startswith("#cloud-config"):
        raise ValueError("user-data is not #cloud-config")
    doc = yaml.safe_load(text) or {}
    for entry in doc.get("write_files") or []:
        path = guest / str(entry["path"]).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(entry.get("content", "")))
        path.chmod(int(str(entry.get("permissions", "0644")), 8))
    for cmd in doc.get("runcmd") or []:
        cmd = [cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        if cmd[0] != "solstice-runner" or not installed:
            console.line(f"cloud-init: runcmd: {cmd[0]}: not found")
            continue
        console.line("cloud-init: runcmd: " + " ".join(cmd))
        return [*installed, *(str(guest / a.lstrip("/")) if a.startswith("/") else a for a in cmd[1:])]
    # The golden image's runner service (images/services/) starts once
    # write_files has delivered the bootstrap.
    env = guest / RUNNER_ENV_PATH.lstrip("/")
    if installed and env.is_file():
        console.line("solstice-runner service: starting")
        return [*installed, "run", "--env-file", str(env)]
    console.line("cloud-init: nothing to run")
    return None


def main() -> int:
    return asyncio.run(run(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(main())
