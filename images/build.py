"""``solstice-image build``: a recipe in, a raw disk image with the runner inside out.

Stages (each reported by ``Progress``):

    debootstrap base                      image base
    1 runner artefact (bundle.py)         1 runner artefact
    2 base system (mmdebstrap, cached)    2 fetch the base image, verify its SHA-256
    3 unpack                              3 convert to raw, grow to disk_size
    4 customize (rootfs.py)               4 provision: boot it once under QEMU with the
    5 disk (disk.py)                        runner, services and files on a payload CD
    6 checksum                            5 checksum

Out come ``<name>-<version>.raw`` and ``<name>-<version>.json`` (what the
image is: checksum, size, runner version, boot ROM, recipe digest), which
``solstice-image import`` reads. The version is ``<date>-<8 hex>``: the hex
digests the recipe, its files and the runner's code, so a changed runner
is a new image version.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import common
import images
import runner
from common.errors import SolsticeError
from common.version import VERSION
from images import disk, provision, rootfs
from images.bundle import SERVICES, build_bundle
from images.fetch import fetch_base, to_raw
from images.progress import Progress
from images.recipe import BaseImage, Recipe
from orchestrator.drivers.errors import DriverError

# ttyS0 last: it is /dev/console, the serial port drivers capture. Quiet: a driver
# reports the console's last lines when a VM fails, and those should be the
# runner's and systemd's errors, not pages of shutdown chatter.
KERNEL_CMDLINE = "console=tty0 console=ttyS0,115200n8 net.ifnames=0 quiet systemd.show_status=error"


class BuildError(SolsticeError):
    """The image could not be built; the message names the stage."""


@dataclass(frozen=True)
class BuiltImage:
    """What ``build`` made; also written next to the image as JSON."""

    name: str
    version: str
    path: str
    sha256: str
    size: int  # bytes the disk holds (its volsize)
    stored: int  # bytes the sparse file takes on disk
    runner_version: str
    bootrom: str
    os: str
    recipe_digest: str
    seconds: float

    @property
    def image_id(self) -> str:
        return f"{self.name}@{self.version}"

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> BuiltImage:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as err:
            raise BuildError(f"{path} is not an image description written by solstice-image build: {err}") \
                from None


def code_digest() -> str:
    """SHA-256 over the runner's code, the builder's, and the service definitions baked into images."""
    h = hashlib.sha256(VERSION.encode())
    for package in (common, runner, images):
        root = Path(package.__path__[0])
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    for path in sorted(SERVICES.iterdir()):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def image_digest(recipe: Recipe) -> str:
    """8 hex digits of everything an image is built from: the recipe, its files, the runner's code."""
    return hashlib.sha256((recipe.digest + code_digest()).encode()).hexdigest()[:8]


def image_version(recipe: Recipe, today: datetime.date | None = None) -> str:
    day = (today or datetime.datetime.now(datetime.UTC).date()).strftime("%Y%m%d")
    return f"{day}-{image_digest(recipe)}"


async def build(recipe: Recipe, out_dir: Path, cache: Path, progress: Progress,
                version: str | None = None) -> BuiltImage:
    """Build ``recipe`` into ``out_dir``; ``cache`` keeps base systems and downloads."""
    started = time.monotonic()
    version = version or image_version(recipe)
    image_id = f"{recipe.name}@{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".work-{recipe.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    raw = out_dir / f"{recipe.name}-{version}.raw"
    try:
        async with _stage(progress, f"runner artefact {VERSION} for Python {recipe.runner.python}"):
            bundle = await build_bundle(recipe.runner, cache / "runner", work)
        if isinstance(recipe.base, BaseImage):
            await _from_image(recipe, recipe.base, raw, cache, work, progress, bundle.path, image_id)
        else:
            await _from_debootstrap(recipe, raw, cache, work, progress, bundle.path, image_id)
        async with _stage(progress, "checksum"):
            sha = await asyncio.to_thread(sha256_file, raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    built = BuiltImage(recipe.name, version, str(raw), sha, raw.stat().st_size, raw.stat().st_blocks * 512,
                       bundle.version, recipe.bootrom, recipe.os, recipe.digest, time.monotonic() - started)
    built.write(raw.with_suffix(".json"))
    return built


async def _from_debootstrap(recipe: Recipe, raw: Path, cache: Path, work: Path, progress: Progress,
                            bundle: Path, image_id: str) -> None:
    assert not isinstance(recipe.base, BaseImage)
    async with _stage(progress, f"base system: Debian {recipe.base.suite}, {len(recipe.packages)} packages"):
        tarball, _cached = await rootfs.base_tarball(recipe, cache / "base")
    tree = work / "tree"
    async with _stage(progress, "unpack the base system"):
        await rootfs.unpack(tarball, tree)
    async with _stage(progress, "install the runner, its service and the recipe's files"):
        await rootfs.customize(recipe, tree, bundle, image_id)
    async with _stage(progress, f"disk image ({recipe.disk_size >> 20} MiB, GPT, {recipe.bootrom})"):
        await disk.build_disk(tree, raw, recipe.disk_size, KERNEL_CMDLINE, work / "disk")


async def _from_image(recipe: Recipe, base: BaseImage, raw: Path, cache: Path, work: Path,
                      progress: Progress, bundle: Path, image_id: str) -> None:
    async with _stage(progress, f"fetch the base image and verify its SHA-256 ({base.sha256[:12]}...)"):
        source = await fetch_base(base, recipe.path.parent, cache / "downloads")
    async with _stage(progress, f"convert to raw, grow to {recipe.disk_size >> 20} MiB"):
        await to_raw(source, base, raw, recipe.disk_size, work)
    async with _stage(progress, "provision: boot once with the runner and files on a payload CD"):
        await provision.provision(recipe, raw, bundle, image_id, work / "provision")


class _stage:  # noqa: N801 -- reads as a statement
    """``progress.stage`` that turns a stage's failure into a BuildError naming it."""

    def __init__(self, progress: Progress, title: str) -> None:
        self.title = title
        self.inner = progress.stage(title)

    async def __aenter__(self) -> None:
        await self.inner.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> bool:
        await self.inner.__aexit__(kind, err, tb)
        if err is not None and isinstance(err, (SolsticeError, DriverError, OSError, ValueError)) \
                and not isinstance(err, BuildError):
            raise BuildError(f"{self.title}: {err}") from err
        return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
