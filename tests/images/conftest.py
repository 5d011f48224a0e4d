"""Fixtures for image tests: the fake illumos host, and the real Debian guest image.

The guest image is built once (``solstice-image build images/recipes/debian-12.yaml``)
and kept in a cache outside the checkout, keyed by the digest of the recipe and
the runner's code: a fresh machine lacks it, so its first test session builds
it (a few minutes: Debian packages from the archive this machine reaches);
later sessions, and every test of a session, reuse it. A changed recipe or
runner is a new digest, hence a new image.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from images.build import BuiltImage, build, image_digest
from images.progress import Progress
from images.recipe import load_recipe
from tests.drivers.conftest import fake_host  # noqa: F401 -- shared fixture

RECIPE = Path(__file__).parents[2] / "images" / "recipes" / "debian-12.yaml"
CACHE = Path(os.environ.get("SOLSTICE_TEST_CACHE", "/var/cache/solstice-tests"))
# What building and booting the guest needs; scripts/ensure-vm-tools.sh installs them.
QEMU_TOOLS = ("qemu-system-x86_64", "qemu-img")
BUILD_TOOLS = ("mmdebstrap", "genisoimage", "mkfs.vfat", "mcopy", "sfdisk", "mkfs.ext4")


def require_vm_tools() -> None:
    """Skip - loudly - only where QEMU could not be installed; any other gap fails."""
    missing = [t for t in QEMU_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"QEMU IS NOT INSTALLED ({', '.join(missing)} missing) and scripts/ensure-vm-tools.sh could "
                    "not install it: the tests that boot real VMs did NOT run")
    gaps = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    assert not gaps, f"image tools missing: {', '.join(gaps)} (scripts/ensure-vm-tools.sh installs them)"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One builder at a time: two test sessions on one machine share the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_guest_image(cache: Path = CACHE) -> BuiltImage:
    recipe = load_recipe(RECIPE)
    digest = image_digest(recipe)
    out = cache / "images"
    with locked(cache / "images.lock"):
        for described in sorted(out.glob(f"{recipe.name}-*-{digest}.json")):
            built = BuiltImage.read(described)
            if Path(built.path).is_file() and Path(built.path).stat().st_size == built.size:
                return built
        for stale in out.glob(f"{recipe.name}-*"):  # other digests: an older recipe or runner
            stale.unlink()
        built = asyncio.run(build(recipe, out, cache / "build", Progress(6, out=sys.stderr, tty=False)))
        os.chmod(built.path, 0o444)  # the backing file of every test VM: never written
        return built


@pytest.fixture(scope="session")
def guest_image() -> BuiltImage:
    require_vm_tools()
    return cached_guest_image()
