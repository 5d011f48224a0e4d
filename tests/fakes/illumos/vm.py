"""The fake bhyve process of one running zone: the "guest" runs the runner.

Started by the fake ``zoneadm boot`` in its own session (so ``halt`` kills the
whole group), with stdout/stderr on ``<zoneroot>/tmp/init.log`` as the
brand's init gives bhyve. What it does, after illumos-gate's bhyve
(``usr/src/cmd/bhyve/common/{bhyverun.c,uart_backend.c}``):

* **Memory.** Guest RAM (the ``ram`` attribute, MiB without a suffix) must
  fit in the fake host's memory (``config.json`` ``memory_mib``, default
  unlimited) next to every other running zone's. When it does not, bhyve's
  ``vm_setup_memory`` loop prints ``Unable to allocate memory (<bytes>),
  retrying in 1 second`` every second and the zone stays ``running``.
* **Console.** ``console=socket,PATH`` (illumos.md §6.3): like
  ``uart_sock_backend`` the value after ``socket,`` may hold the path and
  nothing else; any option after it (``,wait``) fails device init
  (``Unable to initialize backend '<value>' for LPC device com1``, then
  ``Device emulation initialization error: ...``), bhyve exits 4 and the zone
  drops to ``installed``. The socket takes one client at a time (a second one
  is closed at once, ``uart: unexpected client conn``); output written while
  no client is connected is dropped, never buffered; a client that goes away
  frees the slot (``uart: closing client conn``) for the next one.
* **Guest reboot** (``SIGUSR1``, ``FakeHost.guest_reboot``): bhyve exits 0,
  the brand's init starts it again in the same zone: the console socket is
  bound anew (the connected client sees EOF) and the firmware banner printed
  again. The guest program itself keeps running (a simplification).
* **Power off** (``SIGUSR2``, what the fake ``bhyvectl --force-poweroff``
  and ``--destroy`` send): the vCPUs stop, bhyve exits, and zoneadmd halts
  the zone on its own: ``running`` -> ``shutting_down`` (for ``SHUTDOWN_HOLD``
  s; ``zoneadm list -p`` skips the zone meanwhile, as ``zone_print`` skips a
  zone that shut down while it collected data) -> ``installed``.
* **The guest.** It boots for ``config.json`` ``boot_seconds`` (0.3 s) before
  cloud-init's final stage; ``cloud_init`` says what the image does then:
  ``nocloud`` (default, below), ``ignores-seed`` (cloud-init runs but not our
  seed: it prints its "finished" line and nothing else) or ``off`` (no
  cloud-init at all). Like cloud-init, it reads the NoCloud seed the boot
  materialised (``<zoneroot>/cloud-init/user-data``), writes its
  ``write_files`` into the guest's disk (``<zoneroot>/guest``) and runs its
  ``runcmd``: ``sh -c "echo TEXT >/dev/console"`` prints TEXT on the serial
  console, and ``solstice-runner`` is started as ``config.json``
  ``runner_argv`` says; anything else is "not found". Without a runcmd naming
  it, the image's runner service (images/services/) starts the runner once
  ``write_files`` has delivered ``/etc/solstice/runner.env``. When the runner exits
  the guest powers off (bhyve exit 1), which drops the zone to ``installed``
  (illumos.md §1.3).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from common.bootstrap import RUNNER_ENV_PATH
from tests.fakes.illumos import state as st
from tests.fakes.illumos.zoneadm import attr, to_installed

SHUTDOWN_HOLD = 0.3  # seconds a powered-off zone spends in shutting_down (config.json shutdown_hold)
CLOUD_INIT_DONE = ("Cloud-init v. 24.1 finished at Thu, 01 Jan 2026 00:00:05 +0000. "
                   "Datasource DataSourceNoCloud [seed=/dev/sr0].  Up 5.00 seconds")
_RAM = re.compile(r"^([0-9]+)([KMGT]?)$", re.I)
_ECHO = re.compile(r"^echo (.+?) ?>/dev/console$")


def ram_bytes(value: str | None) -> int:
    """The brand's ``ram`` attribute in bytes (default 1G; no suffix = MiB)."""
    m = _RAM.match(value or "1G")
    if not m:
        return 1 << 30
    unit = (m.group(2) or "M").upper()
    return int(m.group(1)) * 1024 ** " KMGT".index(unit)


def log(text: str) -> None:
    """bhyve's stderr: init.log."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Console:
    """The socket UART: one client, output without a client dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.client: asyncio.StreamWriter | None = None
        self.server: asyncio.base_events.Server | None = None

    async def bind(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.server = await asyncio.start_unix_server(self._accept, path=str(self.path))

    async def rebind(self) -> None:
        await self.close()
        await self.bind()

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.client is not None:
            log("uart: unexpected client conn")
            writer.close()
            return
        self.client = writer
        try:
            await reader.read()  # until the client goes away
        except (ConnectionError, asyncio.CancelledError):
            pass
        if self.client is writer:
            log("uart: closing client conn")
            self.client = None
            writer.close()

    def write(self, data: bytes) -> None:
        if self.client is None:
            return  # sockwrite() to clifd -1: dropped
        try:
            self.client.write(data)
        except (ConnectionError, RuntimeError):
            self.client = None

    def line(self, text: str) -> None:
        self.write(text.encode() + b"\r\n")

    async def drain(self) -> None:
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.drain(), 1)
            except (ConnectionError, asyncio.TimeoutError):
                pass


def other_zones_ram(state: dict[str, Any], me: str) -> int:
    return sum(ram_bytes(attr(z, "ram")) for n, z in state["zones"].items()
               if n != me and z["state"] == "running" and z.get("vm_pid"))


async def power_off(base: Path, zone_name: str, code: int) -> int:
    """bhyve exits with ``code``; zoneadmd halts the zone (via shutting_down) unless it moved on."""
    with st.locked(base) as s:
        z = s["zones"].get(zone_name)
        mine = z is not None and z.get("vm_pid") == os.getpid()
        if mine and z["state"] == "running":
            z["state"] = "shutting_down"
    if mine:
        config_path = base / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        await asyncio.sleep(config.get("shutdown_hold", SHUTDOWN_HOLD))
        with st.locked(base) as s:
            z = s["zones"].get(zone_name)
            if z and z.get("vm_pid") == os.getpid() and z["state"] in ("running", "shutting_down"):
                to_installed(s, zone_name)
    return code


async def run(zone_name: str) -> int:
    base = st.root()
    state = st.read(base)
    zone = state["zones"][zone_name]
    zonepath = zone["config"]["zonepath"]
    root = st.host_path(zonepath, base) / "root"
    config_path = base / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}

    spec = attr(zone, "console") or "/dev/zconsole"
    console: Console | None = None
    if spec.startswith("socket,"):
        opts = spec[len("socket,"):].split(",")
        path = next((o for o in opts if o.startswith("/")), None)
        if path is None or len(opts) != 1:
            log(f"Unable to initialize backend '{spec}' for LPC device com1")
            log("Device emulation initialization error: Invalid argument")  # errno UNCONFIRMED
            return await power_off(base, zone_name, 4)
        console = Console(root / path.lstrip("/"))

    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR2, lambda: stopped.done() or stopped.set_result(1))
    loop.add_signal_handler(signal.SIGUSR1, lambda: console is not None and asyncio.ensure_future(
        _reboot(console, zone_name)))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGUSR2})  # blocked by zoneadm boot

    want = ram_bytes(attr(zone, "ram"))
    limit = config.get("memory_mib")
    while limit is not None and other_zones_ram(st.read(base), zone_name) + want > limit << 20:
        log(f"Unable to allocate memory ({want}), retrying in 1 second")
        try:
            return await power_off(base, zone_name, await asyncio.wait_for(asyncio.shield(stopped), 1))
        except asyncio.TimeoutError:
            pass

    if console is not None:
        await console.bind()
    out = console or Console(Path("/nonexistent"))  # /dev/zconsole: nobody here reads it
    out.line(f"bhyve: {zone_name}: starting UEFI firmware")
    guest = asyncio.create_task(_guest(zone, root, config, out))
    done, _ = await asyncio.wait({guest, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if guest in done:
        await out.drain()  # the last words reach a connected reader before we vanish
        code = 1  # the guest powered off
    else:
        code = stopped.result()
        guest.cancel()
        await asyncio.gather(guest, return_exceptions=True)
    if console is not None:
        await console.close()
    return await power_off(base, zone_name, code)


async def _reboot(console: Console, zone_name: str) -> None:
    await console.rebind()
    console.line(f"bhyve: {zone_name}: starting UEFI firmware")


async def _guest(zone: dict[str, Any], root: Path, config: dict[str, Any], console: Console) -> None:
    """The guest OS: returns once it powered off, or never (it hangs)."""
    forever = asyncio.get_running_loop().create_future()
    if attr(zone, "bootdisk") is None:
        console.line("BdsDxe: No bootable option or device was found.")
        await forever
    guest = root / "guest"  # the guest's own disk; it goes away with the zone
    guest.mkdir(parents=True, exist_ok=True)
    # The guest OS boots before cloud-init's final stage runs runcmd (seconds on a real guest).
    await asyncio.sleep(config.get("boot_seconds", 0.3))
    mode = config.get("cloud_init", "nocloud")  # the image: cloud-init reads NoCloud, ignores it, or is absent
    if mode == "off":
        console.line("login: ")
        await forever
    if mode == "ignores-seed":
        console.line(CLOUD_INIT_DONE)
        await forever
    try:
        argv = cloud_init(root / "cloud-init", guest, config.get("runner_argv"), console)
    except (OSError, ValueError, yaml.YAMLError) as err:
        console.line(f"cloud-init: {err}")
        await forever
    if argv is None:
        await forever
        return
    # A fresh guest: no bootstrap in its environment, only what cloud-init wrote.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLSTICE_RUNNER_")}
    env["SOLSTICE_RUNNER_DIR"] = str(guest)
    env["SOLSTICE_RUNNER_DISK_DIR"] = str(_disks_by_id(zone, guest))
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(guest), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.read(65536):
            console.write(chunk)
        code = await proc.wait()
    except asyncio.CancelledError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    console.line(f"reboot: Power down (runner exit {code})")


def _disks_by_id(zone: dict[str, Any], guest: Path) -> Path:
    """The guest's ``/dev/disk/by-id``: each ``diskN`` attribute with a ``serial=`` shows as
    ``virtio-<serial>``, a link to its volume's files (zfs.py keeps them), as if mounted."""
    from tests.fakes.illumos.zfs import data_dir

    by_id = guest / "dev" / "disk" / "by-id"
    by_id.mkdir(parents=True, exist_ok=True)
    for a in zone["config"]["attrs"]:
        name, value = a.get("name", ""), a.get("value", "")
        if name.startswith("disk") and name[4:].isdigit() and ",serial=" in value:
            dataset, serial = value.split(",serial=", 1)
            link = by_id / f"virtio-{serial}"
            link.unlink(missing_ok=True)
            link.symlink_to(data_dir(dataset))
    return by_id


def cloud_init(seed: Path, guest: Path, installed: list[str] | None, console: Console) -> list[str] | None:
    """Do what cloud-init does with the NoCloud seed: ``write_files`` into the
    guest, then run ``runcmd`` in order: console echoes are printed, the first
    ``solstice-runner`` command is returned as an argv (its absolute guest
    paths mapped into ``guest``). None (after saying why) when nothing runs.
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
        cmd = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
        echo = _ECHO.match(cmd[2]) if cmd[:2] == ["sh", "-c"] and len(cmd) == 3 else None
        if echo:
            console.line(" ".join(shlex.split(echo.group(1))))
            continue
        if cmd[0] != "solstice-runner" or not installed:
            console.line(f"cloud-init: runcmd: {cmd[0]}: not found")
            continue
        console.line("cloud-init: runcmd: " + " ".join(cmd))
        return [*installed, *(str(guest / a.lstrip("/")) if a.startswith("/") else a for a in cmd[1:])]
    # The golden image's runner service (images/services/) starts once
    # write_files has delivered the bootstrap.
    env = guest / RUNNER_ENV_PATH.lstrip("/")
    if installed and env.is_file():
        console.line(CLOUD_INIT_DONE)  # the final stage is over; the service starts independently
        console.line("solstice-runner service: starting")
        return [*installed, "run", "--env-file", str(env)]
    console.line("cloud-init: nothing to run")
    console.line(CLOUD_INIT_DONE)
    return None


def main() -> int:
    return asyncio.run(run(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(main())
