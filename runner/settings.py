"""Runner settings: how it buffers, retries and where it keeps files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


def _default_root() -> Path:
    return Path(os.environ.get("SOLSTICE_RUNNER_DIR") or Path(tempfile.gettempdir()) / "solstice-runner")


@dataclass(frozen=True)
class RunnerSettings:
    """Tunables; the defaults suit a VM. Every field has a ``solstice-runner run`` flag."""

    root: Path = field(default_factory=_default_root)  # workspace + spool live here
    offline_limit: float = 300.0  # orchestrator unreachable longer than this: give up (until GetJob says its own)
    batch_bytes: int = 256 * 1024  # seal a log batch at this size...
    batch_delay: float = 0.05  # ...or this long after its first line
    chunk_bytes: int = 64 * 1024  # longer lines are split into continuation chunks
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    rpc_timeout: float = 15.0
    # Run steps as this user (the runner must be root): set by the local driver
    # for a contained job (SOLSTICE_RUNNER_STEP_USER). "" runs them as the runner.
    step_user: str = field(default_factory=lambda: os.environ.get("SOLSTICE_RUNNER_STEP_USER", ""))
    pipe_grace: float = 5.0  # a step's pipes are read this long after its process exited
    # Where a bhyve VM's cache disks show up (virtio-solstice-c<i>, the serial the driver gives them).
    disk_dir: Path = field(default_factory=lambda: Path(os.environ.get("SOLSTICE_RUNNER_DISK_DIR")
                                                        or "/dev/disk/by-id"))

    @property
    def workspace(self) -> Path:
        return self.root / "work"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def scripts(self) -> Path:
        return self.root / "scripts"

    @property
    def home(self) -> Path:
        """HOME (and TMPDIR below it) of steps run as ``step_user``."""
        return self.root / "home"
