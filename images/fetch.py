"""A recipe's base image: fetched (or found), verified against its SHA-256, made raw.

Downloads land in the build cache under their checksum, so a second build
fetches nothing. The checksum is of the file as published (compressed or
not); a mismatch stops the build before anything uses the file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import lzma
import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import SolsticeError
from images.recipe import BaseImage
from orchestrator.commands import run_command

CHUNK = 1 << 20
DOWNLOAD_TIMEOUT = 60.0  # per read; a stalled server fails the build


class FetchError(SolsticeError):
    """The base image could not be had, or is not the one the recipe names."""


def verify(path: Path, expected: str) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise FetchError(f"checksum mismatch for {path}: the recipe says sha256 {expected}, "
                         f"the file is {h.hexdigest()}")


async def published_sha256(url: str) -> str:
    """The checksum in a published ``<hex>  <file name>`` file (the first 64-hex word)."""
    try:
        text = await asyncio.to_thread(_read_url, url)
    except OSError as err:
        raise FetchError(f"cannot fetch the checksum {url}: {err}") from err
    for word in text.split():
        if len(word) == 64 and all(c in "0123456789abcdef" for c in word.lower()):
            return word.lower()
    raise FetchError(f"{url} holds no SHA-256 checksum")


def _read_url(url: str) -> str:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:  # noqa: S310
        return str(response.read(64 * 1024).decode(errors="replace"))


async def fetch_base(base: BaseImage, recipe_dir: Path, downloads: Path) -> Path:
    """The verified base image file (a local path, or a download kept in ``downloads``)."""
    if not base.sha256:
        base = dataclasses.replace(base, sha256=await published_sha256(base.sha256_url))
    if base.path:
        path = Path(base.path) if Path(base.path).is_absolute() else recipe_dir / base.path
        if not path.is_file():
            raise FetchError(f"base image {path} does not exist")
        await asyncio.to_thread(verify, path, base.sha256)
        return path
    if base.url.startswith("file://"):
        return await fetch_base(BaseImage(base.sha256, path=base.url.removeprefix("file://")), recipe_dir, downloads)
    downloads.mkdir(parents=True, exist_ok=True)
    out = downloads / base.sha256
    if out.is_file():
        await asyncio.to_thread(verify, out, base.sha256)
        return out
    tmp = downloads / f"{base.sha256}.part"
    try:
        await asyncio.to_thread(_download, base.url, tmp)
        await asyncio.to_thread(verify, tmp, base.sha256)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"cannot download {base.url}: {err}") from err
    except FetchError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out


def _download(url: str, out: Path) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, open(out, "wb") as f:  # noqa: S310
        shutil.copyfileobj(response, f, CHUNK)


async def to_raw(source: Path, base: BaseImage, raw: Path, size: int, work: Path) -> None:
    """Write ``source`` (compressed and/or qcow2) as a raw disk of ``size`` bytes at ``raw``."""
    plain = source
    if base.compression != "none":
        plain = work / "base.decompressed"
        if base.compression == "zstd":
            await run_command(["zstd", "-q", "-d", "-f", "-o", str(plain), str(source)], timeout=1800.0)
        else:
            opener = lzma.open if base.compression == "xz" else gzip.open
            await asyncio.to_thread(_decompress, opener, source, plain)
    tmp = raw.with_name(raw.name + ".part")
    if base.format == "qcow2":
        await run_command(["qemu-img", "convert", "-q", "-O", "raw", str(plain), str(tmp)], timeout=1800.0)
    else:
        await asyncio.to_thread(shutil.copyfile, plain, tmp)
    current = tmp.stat().st_size
    if current > size:
        tmp.unlink()
        raise FetchError(f"the base image is {current >> 20} MiB, larger than the recipe's disk_size "
                         f"({size >> 20} MiB)")
    with open(tmp, "r+b") as f:
        f.truncate(size)  # the guest grows its file system into the rest (cloud-init growpart)
    os.replace(tmp, raw)


def _decompress(opener: Callable[..., Any], source: Path, out: Path) -> None:  # gzip.open, lzma.open
    with opener(source, "rb") as i, open(out, "wb") as o:
        shutil.copyfileobj(i, o, CHUNK)
