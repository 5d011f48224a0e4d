"""Driver configuration: which driver, the bhyve image catalog, local driver settings.

The catalog maps a workflow's ``runs_on`` label to a golden image: a ZFS
volume snapshot to clone, the VM's size, boot ROM, network link and egress;
each link the images use has an address pool the guests' addresses come from.
Example (the ``drivers`` section of the orchestrator's YAML; docs/illumos.md
has more):

    drivers:
      driver: bhyve
      boot_timeout: 5m
      bhyve:
        vm_dataset: rpool/solstice/vms
        zones_dataset: rpool/solstice/zones
        zones_path: /solstice/zones
        links:
          solstice0:
            cidr: 10.9.0.0/24
            gateway: 10.9.0.1
            first: 10.9.0.10
            resolvers: [10.9.0.1]
        images:
          illumos-stable:
            dataset: rpool/solstice/images/illumos-stable
            snapshot: "2026-11-01"
            vcpus: 2
            ram: 4G
            disk_size: 40G
            link: solstice0
            egress: runner

Every name here reaches a command line, so each is validated when loaded.
"""

from __future__ import annotations

import ipaddress
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
_ROM = re.compile(r"^(BHYVE_(RELEASE|DEBUG)(_CSM)?|/[A-Za-z0-9_./-]+\.fd)$")
_DNS_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")
# bhyve.7: "If the VM supports UEFI boot, you should use BHYVE_RELEASE"; CSM also boots BIOS guests.
DEFAULT_ROM = {"uefi": "BHYVE_RELEASE", "bios": "BHYVE_RELEASE_CSM"}
EGRESS = ("open", "runner")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


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
    disk_size: str | None = None  # grow the clone to this size (zfs set volsize); never below the image's
    link: str = ""  # physical link (or etherstub) the job's VNIC is created over; needs a ``links`` entry
    firmware: str = "uefi"  # how the image boots: uefi or bios; chooses the default ROM
    bootrom: str = ""  # a ROM under /usr/share/bhyve/firmware (or an absolute .fd); "" = DEFAULT_ROM[firmware]
    memreserve: bool = False  # take guest RAM from bhyve's memory reservoir (the brand grows it at boot)
    egress: str = "open"  # open, or runner: the guest may reach the orchestrator's runner address only

    def __post_init__(self) -> None:
        _check("image dataset", validate_dataset_name, self.dataset)
        _check("image snapshot", lambda s: validate_dataset_name(s, snapshot=True), self.source)
        _check("image link", validate_link_name, self.link)
        if self.firmware not in DEFAULT_ROM:
            raise ConfigError(f"image firmware {self.firmware!r} is not one of: {', '.join(DEFAULT_ROM)}")
        if self.bootrom and not _ROM.fullmatch(self.bootrom):
            raise ConfigError(f"image bootrom {self.bootrom!r} is not BHYVE_RELEASE[_CSM], BHYVE_DEBUG[_CSM] "
                              "or an absolute path to a .fd file")
        if self.egress not in EGRESS:
            raise ConfigError(f"image egress {self.egress!r} is not one of: {', '.join(EGRESS)}")
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

    @property
    def rom(self) -> str:
        """The ``bootrom`` attribute the zone gets."""
        return self.bootrom or DEFAULT_ROM[self.firmware]


def _ip(what: str, value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not an IPv4 address") from None


@dataclass(frozen=True)
class LinkNetwork:
    """How guests on one link get their address: a static pool (``cidr``) or ``dhcp: true``.

    With a pool each VM gets a free address of ``first``..``last`` (default:
    the whole subnet but its network, broadcast, gateway and resolver
    addresses) leased in the state store; it becomes the zone's
    ``allowed-address`` (+ ``defrouter``, + ``resolvers``), from which the
    brand writes the guest's NoCloud network-config and turns link protection
    on. ``pool`` names the lease space: nodes whose links share one segment
    must use the same name (the default, the CIDR, does that for identical
    configs); give a host-only etherstub a name of its own to stop sharing.
    """

    dhcp: bool = False
    cidr: str = ""
    gateway: str = ""
    first: str = ""
    last: str = ""
    resolvers: tuple[str, ...] = ()
    dns_domain: str = ""
    pool: str = ""

    def __post_init__(self) -> None:
        if self.dhcp:
            if self.cidr or self.gateway or self.first or self.last:
                raise ConfigError("an address pool is either dhcp: true or a cidr (with gateway/first/last), not both")
            return
        if not self.cidr:
            raise ConfigError("an address pool needs a cidr (e.g. 10.9.0.0/24), or dhcp: true for a link "
                              "whose segment runs a DHCP server")
        try:
            net = ipaddress.IPv4Network(self.cidr, strict=True)
        except ValueError as err:
            raise ConfigError(f"address pool cidr {self.cidr!r}: {err}") from None
        if net.prefixlen > 30:
            raise ConfigError(f"address pool cidr {self.cidr} has no room for guests (at most /30)")
        for what, value in (("gateway", self.gateway), ("first", self.first), ("last", self.last)):
            if value and _ip(f"address pool {what}", value) not in net:
                raise ConfigError(f"address pool {what} {value} is outside {self.cidr}")
        for resolver in self.resolvers:
            _ip("address pool resolver", resolver)
        if self.first and self.last and _ip("first", self.first) > _ip("last", self.last):
            raise ConfigError(f"address pool first {self.first} comes after last {self.last}")
        if self.dns_domain and not _DNS_NAME.fullmatch(self.dns_domain):
            raise ConfigError(f"address pool dns_domain {self.dns_domain!r} is not a domain name")
        if self.pool and not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,64}", self.pool):
            raise ConfigError(f"address pool name {self.pool!r} must be 1-64 of A-Z a-z 0-9 _ . : / -")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def name(self) -> str:
        """The lease space in the state store."""
        return self.pool or self.cidr

    def candidates(self) -> list[str]:
        """The addresses guests may get, in the order they are handed out."""
        net = self.network
        lo = _ip("first", self.first) if self.first else net.network_address + 1
        hi = _ip("last", self.last) if self.last else net.broadcast_address - 1
        reserved = {self.gateway, *self.resolvers}
        return [str(a) for a in net.hosts() if lo <= a <= hi and str(a) not in reserved]


@dataclass(frozen=True)
class HostTools:
    """Read-only tools ``check`` runs besides the driver's own (illumos paths)."""

    kstat: str = "/usr/bin/kstat"
    isainfo: str = "/usr/bin/isainfo"
    ping: str = "/usr/sbin/ping"
    route: str = "/usr/sbin/route"
    ipf: str = "/usr/sbin/ipf"


@dataclass(frozen=True)
class BhyveConfig:
    """Where the bhyve driver puts things on an illumos host, and which tools it runs."""

    images: dict[str, ImageEntry] = field(default_factory=dict)
    links: dict[str, LinkNetwork] = field(default_factory=dict)  # link -> how its guests get addresses
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
    poweroff_timeout: Seconds = Seconds(60)  # after bhyvectl --force-poweroff, before zoneadm halt
    poll_interval: Seconds = Seconds(1)
    host_tools: HostTools = field(default_factory=HostTools)
    # Caches as ZFS volumes cloned into each VM as a second disk (orchestrator/caches/zfs.py);
    # "" keeps them as directories copied over the runner channel instead.
    cache_dataset: str = ""
    cache_volume_size: str = "8G"  # a new (empty) cache disk
    cache_max_repo_bytes: str = "50G"  # saved caches of one repository; the least recently used go

    def __post_init__(self) -> None:
        for label, image in self.images.items():
            if not _LABEL.fullmatch(label):
                raise ConfigError(f"image label {label!r} is not a valid runs_on label")
            if image.link not in self.links:
                raise ConfigError(
                    f"image {label}: link {image.link} has no address pool; add drivers.bhyve.links.{image.link} "
                    "with a cidr (and gateway), or dhcp: true if a DHCP server answers on its segment")
        for link in self.links:
            _check("address pool link", validate_link_name, link)
        _check("bhyve vm_dataset", validate_dataset_name, self.vm_dataset)
        _check("bhyve zones_dataset", validate_dataset_name, self.zones_dataset)
        if self.cache_dataset:
            _check("bhyve cache_dataset", validate_dataset_name, self.cache_dataset)
            size_bytes(self.cache_volume_size)
            size_bytes(self.cache_max_repo_bytes)
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
