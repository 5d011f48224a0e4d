"""Helpers shared by driver tests and their child processes."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path

from common.bootstrap import RunnerBootstrap
from orchestrator.catalog import BhyveConfig, ImageEntry, LinkNetwork
from orchestrator.drivers.base import VmSpec
from tests.fakes.illumos.host import FakeHost

CALLIN = Path(__file__).resolve().parent / "callin_runner.py"
IMAGE = "rpool/solstice/images/illumos-stable"
SNAPSHOT = "2026-11-01"
SRC = f"{IMAGE}@{SNAPSHOT}"
GiB = 2**30


def seed(host: FakeHost) -> None:
    host.seed(
        filesystems=[("rpool/solstice/zones", "/solstice/zones"), ("rpool/solstice/vms", None),
                     ("rpool/other", None)],
        images=[(IMAGE, SNAPSHOT, 10 * GiB)],
        links=["igb0"],
    )
    host.set_runner([sys.executable, str(CALLIN)])


class Gateway:
    """Stands in for the runner gateway: a runner "calls in" by sending its token."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.conns: dict[str, asyncio.StreamWriter] = {}
        self.server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        token = (await reader.readline()).decode().strip()
        self.conns[token] = writer
        self.event(token).set()
        with contextlib.suppress(ConnectionError):
            await reader.read()

    def event(self, token: str) -> asyncio.Event:
        return self.events.setdefault(token, asyncio.Event())

    def spec(self, label: str = "illumos-stable", attempt: int = 1) -> VmSpec:
        job = str(uuid.uuid4())
        return VmSpec.for_job(job, attempt, label, RunnerBootstrap(self.address, "tok-" + uuid.uuid4().hex))

    async def release(self, token: str) -> None:
        """End the runner's job: it exits, and the guest powers off."""
        writer = self.conns.pop(token)
        writer.write(b"done\n")
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        for w in self.conns.values():
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


POOL = LinkNetwork(cidr="10.9.0.0/24", gateway="10.9.0.1", first="10.9.0.10", resolvers=("10.9.0.1",))


def bhyve_config(host: FakeHost, state_dir: Path, links: dict[str, LinkNetwork] | None = None,
                 **images: ImageEntry) -> BhyveConfig:
    """The fake host's bhyve config; igb0 is a DHCP link unless ``links`` says otherwise."""
    images = images or {
        "illumos-stable": ImageEntry(dataset=IMAGE, snapshot=SNAPSHOT, vcpus=2, ram="2G",
                                     disk_size="20G", link="igb0"),
    }
    return BhyveConfig(
        images=dict(images),
        links=links or {"igb0": LinkNetwork(dhcp=True)},
        vm_dataset="rpool/solstice/vms",
        zones_dataset="rpool/solstice/zones",
        zones_path=Path("/solstice/zones"),
        state_dir=state_dir,
        fs_root=host.root / "fs",
        zonecfg=host.tool("zonecfg"),
        zoneadm=host.tool("zoneadm"),
        zfs=host.tool("zfs"),
        dladm=host.tool("dladm"),
        bhyvectl=host.tool("bhyvectl"),
        command_timeout=30.0,  # type: ignore[arg-type]
        halt_timeout=30.0,  # type: ignore[arg-type]
        poll_interval=0.05,  # type: ignore[arg-type]
    )


