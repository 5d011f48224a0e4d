"""Image recipes: one YAML file per golden image, read strictly.

A recipe says what goes into the image; ``solstice-image build`` makes it.
Every key is checked: an unknown key, a missing one or a value of the wrong
shape is a ``RecipeError`` naming ``file:line:col``. Example (a Debian guest
built from packages; images/recipes/ has the maintained ones)::

    name: debian-12
    os: linux                      # linux: systemd unit; illumos: SMF manifest
    base:
      debootstrap:                 # or  image: {url|path, sha256}
        suite: bookworm
    packages: [linux-image-cloud-amd64, systemd-sysv, python3, cloud-init]
    files:
      - {path: /etc/motd, content: "Solstice CI guest\\n"}
    runner: {python: "3.11", platform: manylinux2014_x86_64}
    cloud_init: {datasource_list: [NoCloud, None]}
    bootrom: uefi
    disk_size: 2G
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import yaml

from common.errors import SolsticeError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SIZE = re.compile(r"^([1-9][0-9]*)([MGT])$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.:/=~_-]{0,127}$")
_SUITE = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_PLATFORM = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
_PYTHON = re.compile(r"^3\.[0-9]{1,2}$")
_MODE = re.compile(r"^0?[0-7]{3}$")
_EXCLUDE = re.compile(r"^/[A-Za-z0-9_.*/+-]{1,200}$")
SIZE_UNITS = {"M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
BOOTROMS = {"uefi": "BHYVE_RELEASE", "bios": "BHYVE_RELEASE_CSM"}
OSES = ("linux", "illumos")


class RecipeError(SolsticeError):
    """A recipe is malformed; the message names the file, line and column."""


@dataclass(frozen=True)
class FileEntry:
    """A file put into the image: ``content`` inline or ``source`` (relative to the recipe)."""

    path: str
    content: str | None = None
    source: str | None = None
    mode: int = 0o644


@dataclass(frozen=True)
class Debootstrap:
    """Build the root file system from Debian packages (mmdebstrap)."""

    suite: str
    variant: str = "minbase"
    sources: str = "host"  # "host": this machine's apt sources; else a sources file path
    exclude: tuple[str, ...] = ()  # dpkg path-exclude globs (e.g. kernel modules a VM never loads)
    early_files: tuple[FileEntry, ...] = ()  # in place before any package installs (initramfs config)


@dataclass(frozen=True)
class BaseImage:
    """Start from a published disk image, verified by its SHA-256."""

    sha256: str  # "" when sha256_url names the published checksum instead
    url: str = ""
    path: str = ""
    sha256_url: str = ""  # a published "<hex>  <file>" checksum file, fetched over HTTPS
    format: str = "raw"  # raw | qcow2
    compression: str = "none"  # none | xz | zstd | gzip


@dataclass(frozen=True)
class RunnerSpec:
    """The runner artefact for this guest: its Python and the wheels' platform tag."""

    python: str = "3.11"
    platform: str = "manylinux2014_x86_64"  # "native": this build host's own (illumos builds)
    prefix: str = "/opt/solstice/runner"


@dataclass(frozen=True)
class Recipe:
    """One golden image, as read from its YAML file."""

    path: Path
    name: str
    os: str
    base: Debootstrap | BaseImage
    runner: RunnerSpec
    disk_size: int  # bytes
    bootrom: str = "uefi"
    packages: tuple[str, ...] = ()
    files: tuple[FileEntry, ...] = ()
    cloud_init: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # the file as read: its hash versions the build

    @property
    def digest(self) -> str:
        """SHA-256 of the recipe text and the files it names (what a cache is keyed on)."""
        h = hashlib.sha256(self.text.encode())
        for entry in self.files:
            if entry.source is not None:
                h.update(self.source_path(entry).read_bytes())
        return h.hexdigest()

    def source_path(self, entry: FileEntry) -> Path:
        assert entry.source is not None
        return (self.path.parent / entry.source).resolve()

    @property
    def bhyve_bootrom(self) -> str:
        """The bhyve brand's ``bootrom`` attribute value for this image."""
        return BOOTROMS[self.bootrom]


def parse_size(text: str) -> int:
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size like 2G or 512M")
    return int(m.group(1)) * SIZE_UNITS[m.group(2)]


def load_recipe(path: Path) -> Recipe:
    """Read and check the recipe at ``path``; ``RecipeError`` names where it is wrong."""
    try:
        text = path.read_text()
    except OSError as err:
        raise RecipeError(f"cannot read recipe {path}: {err.strerror}") from err
    return parse_recipe(text, path)


def parse_recipe(text: str, path: Path) -> Recipe:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(f"{where}: not valid YAML: {getattr(err, 'problem', err)}") from None
    if root is None:
        raise RecipeError(f"{path}: the recipe is empty")
    r = _Reader(path)
    top = r.mapping(root, "recipe", required={"name", "os", "base", "runner", "disk_size"},
                    optional={"packages", "files", "cloud_init", "bootrom"})
    name = r.string(top["name"], "name", _NAME, "lowercase letters, digits, '.', '_' or '-' (at most 63)")
    os_name = r.choice(top["os"], "os", OSES)
    base = r.base(top["base"])
    runner = r.runner(top["runner"])
    disk_size = r.convert(top["disk_size"], "disk_size", parse_size)
    bootrom = r.choice(top["bootrom"], "bootrom", tuple(BOOTROMS)) if "bootrom" in top else "uefi"
    packages = tuple(r.string(n, "packages[]", _PACKAGE, "a package name")
                     for n in r.sequence(top["packages"], "packages")) if "packages" in top else ()
    files = tuple(r.file(n) for n in r.sequence(top["files"], "files")) if "files" in top else ()
    cloud_init = r.plain(top["cloud_init"], "cloud_init", dict) if "cloud_init" in top else {}
    if isinstance(base, Debootstrap) and not packages:
        r.fail(top["base"], "a debootstrap base needs 'packages' (at least a kernel and python3)")
    recipe = Recipe(path=path, name=name, os=os_name, base=base, runner=runner, disk_size=disk_size,
                    bootrom=bootrom, packages=packages, files=files, cloud_init=cloud_init, text=text)
    for entry, node in zip(files, r.sequence(top["files"], "files") if "files" in top else (), strict=False):
        if entry.source is not None and not recipe.source_path(entry).is_file():
            r.fail(node, f"files: source {entry.source!r} does not exist next to the recipe")
    return recipe


class _Reader:
    """Walks the composed YAML nodes, so every error can say where it is."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        mark = node.start_mark
        raise RecipeError(f"{self.path}:{mark.line + 1}:{mark.column + 1}: {message}")

    def mapping(self, node: yaml.Node, what: str, required: set[str], optional: AbstractSet[str] = frozenset()
                ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name not in required | optional:
                known = ", ".join(sorted(required | optional))
                self.fail(key, f"unknown key {name!r} in {what} (known: {known})")
            if name in out:
                self.fail(key, f"duplicate key {name!r} in {what}")
            out[name] = value
        missing = sorted(required - set(out))
        if missing:
            self.fail(node, f"{what} lacks {', '.join(repr(m) for m in missing)}")
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.fail(node, f"{what} must be a single value")
        return str(node.value)

    def string(self, node: yaml.Node, what: str, pattern: re.Pattern[str], shape: str) -> str:
        value = self.scalar(node, what)
        if not pattern.fullmatch(value):
            self.fail(node, f"{what} {value!r} is not {shape}")
        return value

    def choice(self, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str:
        value = self.scalar(node, what)
        if value not in choices:
            self.fail(node, f"{what} {value!r} is not one of: {', '.join(choices)}")
        return value

    def convert(self, node: yaml.Node, what: str, fn: Callable[[str], Any]) -> Any:
        try:
            return fn(self.scalar(node, what))
        except ValueError as err:
            self.fail(node, f"{what}: {err}")

    def plain(self, node: yaml.Node, what: str, kind: type) -> Any:
        value = yaml.safe_load(yaml.serialize(node))
        if not isinstance(value, kind):
            self.fail(node, f"{what} must be a {kind.__name__}")
        return value

    def base(self, node: yaml.Node) -> Debootstrap | BaseImage:
        kinds = self.mapping(node, "base", required=set(), optional={"debootstrap", "image"})
        if len(kinds) != 1:
            self.fail(node, "base must name exactly one of 'debootstrap' or 'image'")
        if "debootstrap" in kinds:
            m = self.mapping(kinds["debootstrap"], "base.debootstrap", {"suite"},
                             {"variant", "sources", "exclude", "early_files"})
            suite = self.string(m["suite"], "base.debootstrap.suite", _SUITE, "a Debian suite name")
            variant = self.choice(m["variant"], "variant", ("minbase", "essential", "apt", "required")) \
                if "variant" in m else "minbase"
            sources = self.scalar(m["sources"], "sources") if "sources" in m else "host"
            if sources != "host" and not PurePosixPath(sources).is_absolute():
                self.fail(m["sources"], "base.debootstrap.sources is 'host' or an absolute path")
            exclude = tuple(self.string(n, "base.debootstrap.exclude[]", _EXCLUDE, "an absolute path glob")
                            for n in self.sequence(m["exclude"], "base.debootstrap.exclude")) \
                if "exclude" in m else ()
            early = tuple(self.file(n) for n in self.sequence(m["early_files"], "base.debootstrap.early_files")) \
                if "early_files" in m else ()
            if any(f.source is not None for f in early):
                self.fail(m["early_files"], "early_files take 'content' only")
            return Debootstrap(suite, variant, sources, exclude, early)
        m = self.mapping(kinds["image"], "base.image", set(),
                         {"sha256", "sha256_url", "url", "path", "format", "compression"})
        if ("sha256" in m) == ("sha256_url" in m):
            self.fail(kinds["image"], "base.image needs exactly one of 'sha256' or 'sha256_url'")
        sha = self.scalar(m["sha256"], "sha256").lower() if "sha256" in m else ""
        if "sha256" in m and not _SHA256.fullmatch(sha):
            self.fail(m["sha256"], f"base.image.sha256 {sha[:80]!r} is not 64 hex digits")
        sha_url = self.scalar(m["sha256_url"], "sha256_url") if "sha256_url" in m else ""
        if sha_url and not sha_url.startswith("https://"):
            self.fail(m["sha256_url"], f"base.image.sha256_url {sha_url!r} must be an https:// URL")
        url = self.scalar(m["url"], "url") if "url" in m else ""
        path = self.scalar(m["path"], "path") if "path" in m else ""
        if bool(url) == bool(path):
            self.fail(kinds["image"], "base.image needs exactly one of 'url' or 'path'")
        if url and not url.startswith(("https://", "http://", "file://")):
            self.fail(m["url"], f"base.image.url {url!r} is not an http(s):// or file:// URL")
        fmt = self.choice(m["format"], "format", ("raw", "qcow2")) if "format" in m else "raw"
        default = next((c for s, c in ((".xz", "xz"), (".zst", "zstd"), (".gz", "gzip"))
                        if (url or path).endswith(s)), "none")
        comp = self.choice(m["compression"], "compression", ("none", "xz", "zstd", "gzip")) \
            if "compression" in m else default
        return BaseImage(sha, url, path, sha_url, fmt, comp)

    def runner(self, node: yaml.Node) -> RunnerSpec:
        m = self.mapping(node, "runner", set(), {"python", "platform", "prefix"})
        spec = RunnerSpec()
        python = self.string(m["python"], "runner.python", _PYTHON, "a Python version like 3.11") \
            if "python" in m else spec.python
        platform = self.string(m["platform"], "runner.platform", _PLATFORM, "a wheel platform tag") \
            if "platform" in m else spec.platform
        prefix = self.scalar(m["prefix"], "runner.prefix") if "prefix" in m else spec.prefix
        if not PurePosixPath(prefix).is_absolute() or ".." in PurePosixPath(prefix).parts:
            self.fail(m["prefix"], f"runner.prefix {prefix!r} must be an absolute path")
        return RunnerSpec(python, platform, prefix)

    def file(self, node: yaml.Node) -> FileEntry:
        m = self.mapping(node, "files[]", {"path"}, {"content", "source", "mode"})
        path = self.scalar(m["path"], "files[].path")
        pure = PurePosixPath(path)
        if not pure.is_absolute() or ".." in pure.parts:
            self.fail(m["path"], f"files[].path {path!r} must be an absolute path without '..'")
        if ("content" in m) == ("source" in m):
            self.fail(node, "a file needs exactly one of 'content' or 'source'")
        content = self.scalar(m["content"], "files[].content") if "content" in m else None
        source = self.scalar(m["source"], "files[].source") if "source" in m else None
        mode = int(self.string(m["mode"], "files[].mode", _MODE, "an octal mode like 0644"), 8) \
            if "mode" in m else 0o644
        return FileEntry(path, content, source, mode)
