"""Test-side handle on a fake illumos host: seed it, inject faults, inspect it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.illumos import state as st
from tests.fakes.illumos import zfs

BIN = Path(__file__).resolve().parent / "bin"


@dataclass
class FakeHost:
    """A fake host under ``root`` (keep it short: console sockets live below it)."""

    root: Path

    @classmethod
    def create(cls) -> FakeHost:
        # Unix socket paths are limited to ~107 bytes, so not under pytest's tmp_path.
        return cls(Path(tempfile.mkdtemp(prefix="sfi", dir="/tmp")))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def env(self) -> dict[str, str]:
        return {st.ENV_ROOT: str(self.root)}

    def tool(self, name: str) -> str:
        return str(BIN / name)

    def seed(
        self,
        *,
        pool: str = "rpool",
        filesystems: Sequence[tuple[str, str | None]] = (),
        images: Sequence[tuple[str, str, int]] = (),
        links: Sequence[str] = ("igb0",),
        firmware: Sequence[str] = ("BHYVE_RELEASE", "BHYVE_RELEASE_CSM", "BHYVE_VARS"),
    ) -> None:
        """Pool root, filesystems (name, mountpoint), image zvols (name, snapshot, volsize), links, ROMs."""
        with st.locked(self.root) as state:
            state["datasets"][pool] = zfs.new_ds(state, "filesystem", mountpoint=f"/{pool}")
            for name, mp in filesystems:
                zfs.make_parents(state, name)
                state["datasets"][name]["mountpoint"] = mp
            for name, snap, size in images:
                zfs.make_parents(state, name.rsplit("/", 1)[0])
                state["datasets"][name] = zfs.new_ds(state, "volume", volsize=size)
                state["datasets"][f"{name}@{snap}"] = zfs.new_ds(state, "snapshot", volsize=size, snap_of="volume")
            zfs.sync_zvol_nodes({name for name, _, _ in images}, set(), self.root)
            for link in links:
                state["links"][link] = {"class": "phys", "over": None, "vid": 0, "mac": "0:c:29:1:2:3",
                                        "macaddrtype": "fixed", "zone": None}
        for rom in firmware:  # what system/bhyve delivers (bhyve.7 "bootrom")
            path = self.fs(f"/usr/share/bhyve/firmware/{rom}.fd")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")

    def _config(self, **changes: Any) -> None:
        path = self.root / "config.json"
        config = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**config, **changes}))

    def set_runner(self, argv: Sequence[str]) -> None:
        """What a guest's ``runcmd: solstice-runner`` starts."""
        self._config(runner_argv=list(argv))

    def set_memory(self, mib: int | None) -> None:
        """The host memory guests share (None: unlimited); see vm.py."""
        self._config(memory_mib=mib)

    def set_guest_cloud_init(self, mode: str) -> None:
        """nocloud (default), ignores-seed or off: what the image's cloud-init does (vm.py)."""
        self._config(cloud_init=mode)

    def set_shutdown_hold(self, seconds: float) -> None:
        """How long a powered-off zone stays ``shutting_down`` (vm.py)."""
        self._config(shutdown_hold=seconds)

    def guest_reboot(self, vm: str) -> None:
        """The guest reboots: bhyve restarts in the same zone and binds its console anew."""
        pid = self.state()["zones"][vm]["vm_pid"]
        os.kill(pid, signal.SIGUSR1)

    def set_host(self, **facts: Any) -> None:
        """What the fake kstat/isainfo/ping/route report (hosttools.py)."""
        with st.locked(self.root) as state:
            state.setdefault("host", {}).update(facts)

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        (self.root / "faults.json").write_text(json.dumps(rules))

    def state(self) -> dict[str, Any]:
        return st.read(self.root)

    def calls(self) -> list[list[str]]:
        path = self.root / "calls.log"
        if not path.exists():
            return []
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()]

    def clear_calls(self) -> None:
        (self.root / "calls.log").unlink(missing_ok=True)

    def owned(self, prefix: str = "solstice") -> dict[str, list[str]]:
        """Everything carrying ``prefix``: zones, links, datasets; all empty when clean."""
        s = self.state()
        return {
            "zones": sorted(z for z in s["zones"] if z.startswith(prefix + "-")),
            "links": sorted(n for n in s["links"] if n.startswith(prefix)),
            "datasets": sorted(d for d in s["datasets"] if d.rsplit("/", 1)[-1].startswith(prefix + "-")),
        }

    def vm_pids(self) -> list[int]:
        return [z["vm_pid"] for z in self.state()["zones"].values() if z.get("vm_pid")]

    def fs(self, path: str) -> Path:
        return st.host_path(path, self.root)

    def path_env(self) -> dict[str, str]:
        """PATH with the venv first, so the fakes' ``env python3`` is the venv's."""
        import sys

        venv_bin = str(Path(sys.executable).parent)
        return {"PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
