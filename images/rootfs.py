"""The guest's root file system tree for a ``debootstrap`` base, and what goes into it.

``base_tarball`` runs mmdebstrap (debootstrap's faster successor: one apt
run, parallel downloads, a tarball out) once per distinct suite + package
list + apt sources and keeps the result in the build cache, so changing the
runner or a file rebuilds the image in seconds, not minutes.
``customize`` then turns the tree into a Solstice guest: cloud-init's
configuration, the runner artefact and its service, the recipe's files and
``/etc/solstice/image``. Nothing here mounts anything.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import yaml

from common.version import IMAGE_FILE
from images.bundle import SERVICES, install_bundle
from images.recipe import Debootstrap, Recipe
from orchestrator.commands import run_command

HOST_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
MMDEBSTRAP_TIMEOUT = 1800.0
# Left out of the image: documentation, manual pages and translations (a CI guest reads none).
DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")
CLOUD_CFG = "etc/cloud/cloud.cfg.d/90_solstice.cfg"
UNIT = "etc/systemd/system/solstice-runner.service"
SMF_MANIFEST = "var/svc/manifest/site/solstice-runner.xml"


def sources_file(base: Debootstrap) -> Path:
    """The apt sources the base is built from: this host's, or the recipe's file."""
    if base.sources != "host":
        return Path(base.sources)
    for path in HOST_SOURCES:
        if path.is_file() and path.stat().st_size:
            return path
    raise FileNotFoundError("this host has no apt sources (/etc/apt/sources.list[.d]) to build from")


def base_key(recipe: Recipe) -> str:
    """What the cached base tarball depends on: suite, variant, sources and packages."""
    base = recipe.base
    assert isinstance(base, Debootstrap)
    h = hashlib.sha256()
    early = [f"{f.path}\0{f.mode:o}\0{f.content}" for f in base.early_files]
    for part in (base.suite, base.variant, sources_file(base).read_text(), *sorted(recipe.packages),
                 "exclude", *base.exclude, "early", *early):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


async def base_tarball(recipe: Recipe, cache: Path) -> tuple[Path, bool]:
    """The base system tarball (built now, or found in ``cache``); True if it was cached."""
    base = recipe.base
    assert isinstance(base, Debootstrap)
    out = cache / f"base-{base.suite}-{base_key(recipe)}.tar"
    if out.is_file():
        return out, True
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.tar")
    tmp.unlink(missing_ok=True)
    argv = ["mmdebstrap", "--quiet", "--mode=auto", f"--variant={base.variant}",
            f"--include={','.join(recipe.packages)}", "--aptopt=Acquire::Languages \"none\""]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in (*DPKG_EXCLUDES, *base.exclude)]
    early = cache / f"early-{base_key(recipe)}"
    if base.early_files:
        shutil.rmtree(early, ignore_errors=True)
        for entry in base.early_files:
            assert entry.content is not None
            _write(early, entry.path, entry.content, mode=entry.mode)
        argv.append(f"--setup-hook=sync-in {early} /")  # mmdebstrap's special hook: no shell
    argv += [base.suite, str(tmp), str(sources_file(base))]
    try:
        await run_command(argv, timeout=MMDEBSTRAP_TIMEOUT)
    finally:
        shutil.rmtree(early, ignore_errors=True)
    os.replace(tmp, out)
    return out, False


async def unpack(tarball: Path, tree: Path) -> None:
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    await run_command(["tar", "-x", "-p", "--numeric-owner", "-f", str(tarball), "-C", str(tree)],
                      timeout=600.0)


async def customize(recipe: Recipe, tree: Path, bundle: Path, image_id: str) -> None:
    """Make the unpacked tree a Solstice guest (see module docstring)."""
    prefix = recipe.runner.prefix
    install_bundle(bundle, tree, prefix)
    _write(tree, "usr/local/bin/solstice-runner", None, symlink=f"{prefix}/bin/solstice-runner")
    _write(tree, IMAGE_FILE, f"{image_id}\n")
    if recipe.cloud_init:
        _write(tree, CLOUD_CFG, "# solstice-image: the recipe's cloud_init\n"
               + yaml.safe_dump(recipe.cloud_init, sort_keys=True))
    _write(tree, "etc/hostname", f"{recipe.name}\n")
    machine_id = tree / "etc" / "machine-id"
    if machine_id.exists():  # empty: each VM makes its own on first boot
        machine_id.write_text("")
    for entry in recipe.files:
        data = entry.content if entry.content is not None else recipe.source_path(entry).read_text()
        _write(tree, entry.path, data, mode=entry.mode)
    if recipe.os == "linux":
        unit = (SERVICES / "solstice-runner.service").read_text().replace("@PREFIX@", prefix)
        _write(tree, UNIT, unit)
        enable = ["solstice-runner.service"]
        if (tree / "lib/systemd/system/systemd-networkd.service").exists():
            enable.append("systemd-networkd.service")  # renders cloud-init's network-config
        await run_command(["systemctl", f"--root={tree}", "--quiet", "enable", *enable], timeout=120.0)
    else:
        manifest = (SERVICES / "solstice-runner.xml").read_text().replace("@PREFIX@", prefix)
        _write(tree, SMF_MANIFEST, manifest)
    for leftover in ("var/lib/apt/lists", "var/cache/apt"):
        for path in (tree / leftover).glob("*"):
            if path.is_file():
                path.unlink()


def _write(tree: Path, path: str, text: str | None, mode: int = 0o644, symlink: str | None = None) -> None:
    target = tree / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(tree.resolve()):
        # An absolute symlink in the guest's tree would point into this host.
        raise ValueError(f"{path}: its directory leads out of the image through a symlink")
    if target.is_symlink() or target.exists():
        target.unlink()
    if symlink is not None:
        target.symlink_to(symlink)
        return
    assert text is not None
    target.write_text(text)
    target.chmod(mode)
