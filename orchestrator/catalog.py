"""Driver configuration: which driver, the bhyve image catalog, local driver settings.

The catalog maps a workflow's ``runs_on`` label to a golden image: a ZFS
volume snapshot to clone, and the VM's size and network link. Example
(the ``drivers`` section of the orchestrator's YAML; docs/illumos.md has more):

    drivers:
      driver: bhyve
      boot_timeout: 5m
      bhyve:
        vm_dataset: rpool/solstice/vms
        zones_dataset: rpool/solstice/zones
        zones_path: /solstice/zones
        images:
          illumos-stable:
            dataset: rpool/solstice/images/illumos-stable
            snapshot: "2026-11-01"
            vcpus: 2
            ram: 4G
            disk_size: 40G
            link: igb0

Every name here reaches a command line, so each is validated when loaded.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Seconds
from common.errors import ConfigError
from orchestrator.drivers.errors import NameInvalid
from orchestrator.names import validate_dataset_name, validate_link_name

_SIZE = re.compile(r"^[1-9][0-9]*[KMGT]?$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _check(what: str, check, value: str) -> None:  # type: ignore[no-untyped-def]
    try:
        check(value)
    except NameInvalid as err:
        raise ConfigError(f"{what}: {err}") from err


@dataclass(frozen=True)
class ImageEntry:
    """One golden image: ``dataset@snapshot`` (a zvol snapshot) and the VM's shape."""

    dataset: str = ""
    snapshot: str = ""
    vcpus: int = 2
    ram: str = "2G"
    disk_size: str | None = None  # grow the clone to this size (zfs set volsize); None keeps the image's
    link: str = ""  # physical link (or etherstub) the job's VNIC is created over

    def __post_init__(self) -> None:
        _check("image dataset", validate_dataset_name, self.dataset)
        _check("image snapshot", lambda s: validate_dataset_name(s, snapshot=True), self.source)
        _check("image link", validate_link_name, self.link)
        if not 1 <= self.vcpus <= 32:
            raise ConfigError(f"image vcpus must be 1..32 (bhyve brand limit), not {self.vcpus}")
        if not _SIZE.fullmatch(self.ram):
            raise ConfigError(f"image ram {self.ram!r} is not N[KMGT] (no suffix = MiB)")
        if self.disk_size is not None and not _SIZE.fullmatch(self.disk_size):
            raise ConfigError(f"image disk_size {self.disk_size!r} is not N[KMGT]")

    @property
    def source(self) -> str:
        """The snapshot a job's boot volume is cloned from."""
        return f"{self.dataset}@{self.snapshot}"


@dataclass(frozen=True)
class BhyveConfig:
    """Where the bhyve driver puts things on an illumos host, and which tools it runs."""

    images: dict[str, ImageEntry] = field(default_factory=dict)
    vm_dataset: str = "rpool/solstice/vms"  # parent of each job's boot volume
    zones_dataset: str = "rpool/solstice/zones"  # parent dataset of zonepaths (mounted at zones_path)
    zones_path: Path = Path("/solstice/zones")
    state_dir: Path = Path("/var/lib/solstice/bhyve")  # user-data and console logs, root-only
    # Where absolute zone paths are found from this process: "/" on illumos;
    # the fake toolchain keeps its zone paths under a directory of its own.
    fs_root: Path = Path("/")
    zonecfg: str = "/usr/sbin/zonecfg"
    zoneadm: str = "/usr/sbin/zoneadm"
    zfs: str = "/usr/sbin/zfs"
    dladm: str = "/usr/sbin/dladm"
    bhyvectl: str = "/usr/sbin/bhyvectl"
    command_timeout: Seconds = Seconds(120)
    halt_timeout: Seconds = Seconds(300)
    zvol_timeout: Seconds = Seconds(30)  # wait this long for a cloned volume's /dev/zvol node
    poll_interval: Seconds = Seconds(1)

    def __post_init__(self) -> None:
        for label in self.images:
            if not _LABEL.fullmatch(label):
                raise ConfigError(f"image label {label!r} is not a valid runs_on label")
        _check("bhyve vm_dataset", validate_dataset_name, self.vm_dataset)
        _check("bhyve zones_dataset", validate_dataset_name, self.zones_dataset)
        if not self.zones_path.is_absolute():
            raise ConfigError(f"bhyve zones_path {self.zones_path} must be absolute")


def size_bytes(text: str) -> int:
    """``N[KMGT]`` as bytes; no suffix means MiB (as for bhyve's ``ram``)."""
    if not _SIZE.fullmatch(text):
        raise ConfigError(f"{text!r} is not a size N[KMGT] (no suffix = MiB)")
    scale = {"K": 1, "M": 2, "G": 3, "T": 4}.get(text[-1], 2)
    number = int(text[:-1] if text[-1] in "KMGT" else text)
    return number * 1024**scale


@dataclass(frozen=True)
class LocalLimits:
    """What one contained local job may use: memory (RAM + swap, N[KMGT]) and processes (tasks)."""

    memory: str = "4G"
    pids: int = 2048

    def __post_init__(self) -> None:
        if not _SIZE.fullmatch(self.memory) or size_bytes(self.memory) < 64 * 1024**2:
            raise ConfigError(f"local memory limit {self.memory!r} must be a size N[KMGT] of at least 64M")
        if not 16 <= self.pids <= 4_194_304:
            raise ConfigError(f"local pids limit must be 16..4194304, not {self.pids}")


@dataclass(frozen=True)
class LocalConfig:
    """The local driver: the runner as a subprocess on this machine, contained where the host allows.

    With ``contain`` (the default) on a Linux host where the node runs as
    root, each job gets PID and mount namespaces, a cgroup with ``limits``
    (``label_limits`` per ``runs_on`` label) and runs its steps as
    ``job_user``; local_contain.py says what else and what not. A host that
    cannot isolate jobs refuses untrusted ones (fork pull requests) unless
    ``allow_untrusted``.
    """

    state_dir: Path = Path("~/.local/state/solstice/vms").expanduser()
    # argv the runner is started with; the driver appends nothing secret to it
    # (the token travels in the environment so `ps` never shows it).
    runner_argv: tuple[str, ...] = ("solstice-runner", "run")
    labels: tuple[str, ...] = ()  # labels served; empty serves every label
    stop_grace: Seconds = Seconds(10)  # SIGTERM, then SIGKILL after this long
    # Linux: run each runner in its own network namespace (``unshare --net
    # --map-root-user``); it reaches the orchestrator only through a Unix
    # socket relay in ``relay_dir`` (local_relay.py).
    isolate_network: bool = False
    unshare: str = "unshare"
    relay_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / f"solstice-relay-{os.getuid()}")
    contain: bool = True  # namespaces + cgroup + job user where the host offers them
    job_user: str = "solstice-job"  # steps run as this user when the node runs as root; "" = as root
    limits: LocalLimits = field(default_factory=LocalLimits)
    label_limits: dict[str, LocalLimits] = field(default_factory=dict)
    cgroup_parent: str = ""  # under each hierarchy's root; "" = the node's own cgroup + /solstice
    job_mount: Path = Path("/run/solstice-job")  # where a contained job sees its directory (an empty mount point)
    allow_untrusted: bool = False  # run fork pull requests even where jobs cannot be isolated
    # Variables passed from the node's environment to the runner besides the
    # fixed allowlist (PATH, LANG, LC_*, TZ and, outside containment, HOME and USER).
    pass_env: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.runner_argv:
            raise ConfigError("local runner_argv must name a program")
        if self.job_user and not _USER.fullmatch(self.job_user):
            raise ConfigError(f"local job_user {self.job_user!r} is not a valid user name")
        for label in self.label_limits:
            if not _LABEL.fullmatch(label):
                raise ConfigError(f"local label_limits: {label!r} is not a valid runs_on label")
        if not self.job_mount.is_absolute():
            raise ConfigError(f"local job_mount {self.job_mount} must be absolute")
        for name in self.pass_env:
            if not _ENV_NAME.fullmatch(name) or name.startswith("SOLSTICE_"):
                raise ConfigError(f"local pass_env: {name!r} is not a variable the runner may be given")

    def limits_for(self, label: str) -> LocalLimits:
        """The limits of a job with ``runs_on == label``."""
        return self.label_limits.get(label, self.limits)


@dataclass(frozen=True)
class DriverConfig:
    """Which driver this node uses, and each driver's own settings."""

    driver: str = "local"
    boot_timeout: Seconds = Seconds(300)
    local: LocalConfig = field(default_factory=LocalConfig)
    bhyve: BhyveConfig = field(default_factory=BhyveConfig)
