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


def is_label(text: str) -> bool:
    """True for a valid ``runs_on`` label (what a catalog entry is keyed by)."""
    return bool(_LABEL.fullmatch(text))


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


@dataclass(frozen=True)
class LocalConfig:
    """The local driver: the runner as a plain subprocess on this machine."""

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

    def __post_init__(self) -> None:
        if not self.runner_argv:
            raise ConfigError("local runner_argv must name a program")


@dataclass(frozen=True)
class QemuImage:
    """One golden image for the qemu driver: a raw disk from ``solstice-image build``."""

    path: Path = Path()
    vcpus: int = 2
    ram: str = "2G"
    bootrom: str = "uefi"  # uefi (OVMF, like bhyve's BHYVE_RELEASE) or bios (SeaBIOS)

    def __post_init__(self) -> None:
        if not self.path.is_absolute():
            raise ConfigError(f"qemu image path {str(self.path)!r} must be absolute")
        if not 1 <= self.vcpus <= 64:
            raise ConfigError(f"qemu image vcpus must be 1..64, not {self.vcpus}")
        if not _SIZE.fullmatch(self.ram):
            raise ConfigError(f"qemu image ram {self.ram!r} is not N[KMGT] (no suffix = MiB)")
        if self.bootrom not in ("uefi", "bios"):
            raise ConfigError(f"qemu image bootrom {self.bootrom!r} is not uefi or bios")


@dataclass(frozen=True)
class QemuConfig:
    """The qemu driver: each job in a QEMU VM on a copy-on-write overlay of its image (Linux hosts)."""

    images: dict[str, QemuImage] = field(default_factory=dict)
    state_dir: Path = Path("/var/lib/solstice/qemu")  # per VM: overlay, seed, console log, pid
    qemu: str = "qemu-system-x86_64"
    qemu_img: str = "qemu-img"
    firmware: Path = Path("/usr/share/ovmf/OVMF.fd")  # UEFI firmware for bootrom uefi
    accel: str = "auto"  # kvm if /dev/kvm opens, else tcg; or force one
    stop_grace: Seconds = Seconds(5)  # SIGTERM, then SIGKILL after this long
    command_timeout: Seconds = Seconds(60)
    poll_interval: Seconds = Seconds(0.5)

    def __post_init__(self) -> None:
        for label in self.images:
            if not _LABEL.fullmatch(label):
                raise ConfigError(f"image label {label!r} is not a valid runs_on label")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise ConfigError(f"qemu accel {self.accel!r} is not auto, kvm or tcg")


@dataclass(frozen=True)
class DriverConfig:
    """Which driver this node uses, and each driver's own settings."""

    driver: str = "local"
    boot_timeout: Seconds = Seconds(300)
    local: LocalConfig = field(default_factory=LocalConfig)
    bhyve: BhyveConfig = field(default_factory=BhyveConfig)
    qemu: QemuConfig = field(default_factory=QemuConfig)
