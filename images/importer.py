"""``solstice-image import``: a built image into a ZFS volume snapshot the bhyve driver clones.

    zfs create -p -V <size> <dataset>        (or grow an existing one: zfs set volsize=)
    write the image to /dev/zvol/rdsk/<dataset>
    zfs snapshot <dataset>@<image version>

Rolling an image forward imports the new version into the same dataset:
clones of jobs still running hang off the older snapshot and are untouched;
the catalog entry then names the new snapshot. Names are validated
(orchestrator/names.py) before they reach ``zfs``, which runs through the
drivers' command runner (orchestrator/commands.py).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common.errors import ConfigError, SolsticeError
from images.build import BuiltImage, sha256_file
from images.disk import MIB, copy_sparse
from orchestrator.catalog import is_label
from orchestrator.commands import run_command
from orchestrator.drivers.bhyve_check import RUNNER_VERSION_PROPERTY
from orchestrator.drivers.check import load_driver_config
from orchestrator.drivers.errors import CommandFailed, NameInvalid
from orchestrator.names import validate_dataset_name

GONE = "dataset does not exist"
ZVOL_WAIT = 30.0


class ImportError_(SolsticeError):  # noqa: N801 -- the builtin name is taken
    """The image could not be imported; nothing half-done is left named as the new version."""


@dataclass(frozen=True)
class ImportPlan:
    image: Path
    built: BuiltImage
    dataset: str
    label: str
    zfs: str = "/usr/sbin/zfs"
    dev_root: Path = Path("/")
    link: str | None = None  # physical link for a label new to the catalog
    timeout: float = 600.0


@dataclass(frozen=True)
class ImportResult:
    """The snapshot made and the catalog entry (``drivers.bhyve.images.<label>``) that serves it."""

    snapshot: str
    label: str
    entry: dict[str, object] = field(default_factory=dict)

    @property
    def entry_text(self) -> str:
        """The entry as YAML to paste under ``drivers.bhyve``."""
        return yaml.safe_dump({"images": {self.label: self.entry}}, sort_keys=False)


def _validate(plan: ImportPlan) -> str:
    try:
        validate_dataset_name(plan.dataset)
        snapshot = validate_dataset_name(f"{plan.dataset}@{plan.built.version}", snapshot=True)
    except NameInvalid as err:
        raise ImportError_(str(err)) from None
    if not is_label(plan.label):
        raise ImportError_(f"label {plan.label!r} is not a valid runs_on label")
    return snapshot


async def import_image(plan: ImportPlan, catalog: Path | None, echo: Callable[[str], None] = lambda _: None
                       ) -> ImportResult:
    """Import ``plan.image``; update ``catalog`` (a node's YAML) if given. Returns the entry."""
    snapshot = _validate(plan)
    echo(f"checking {plan.image} against its recorded sha256")
    if await asyncio.to_thread(sha256_file, plan.image) != plan.built.sha256:
        raise ImportError_(f"{plan.image} does not match the sha256 its .json records: rebuild or copy it again")
    zfs, t = plan.zfs, plan.timeout
    listed = await run_command([zfs, "list", "-H", "-p", "-o", "name,volsize", "-t", "volume,snapshot",
                                "-r", plan.dataset], timeout=t, check=False)
    if listed.exit_code != 0 and GONE not in listed.stderr:
        raise CommandFailed(listed.argv, listed.exit_code, listed.stderr)
    rows = dict(line.split("\t", 1) for line in listed.stdout.splitlines() if "\t" in line)
    if snapshot in rows:
        raise ImportError_(f"{snapshot} already exists: this image version is imported already")
    fresh = plan.dataset not in rows
    if fresh:
        echo(f"zfs create -p -V {plan.built.size} {plan.dataset}")
        await run_command([zfs, "create", "-p", "-V", str(plan.built.size), plan.dataset], timeout=t)
    elif int(rows[plan.dataset] or 0) < plan.built.size:
        await run_command([zfs, "set", f"volsize={plan.built.size}", plan.dataset], timeout=t)
    node = plan.dev_root / "dev" / "zvol" / "rdsk" / plan.dataset
    await _wait_for(node)
    echo(f"writing {plan.built.size >> 20} MiB to {node}")
    # A new volume reads as zeros, so its zero blocks need no writing; an
    # existing one (rolling forward) holds the previous version: write it all.
    await asyncio.to_thread(copy_sparse if fresh else _copy_all, plan.image, node, 0)
    echo(f"zfs snapshot {snapshot}")
    await run_command([zfs, "snapshot", snapshot], timeout=t)
    # What `solstice-orchestrator check` reads to say which runner each image holds.
    await run_command([zfs, "set", f"{RUNNER_VERSION_PROPERTY}={plan.built.runner_version}", snapshot], timeout=t)
    entry = await asyncio.to_thread(_catalog_entry, plan, catalog)
    return ImportResult(snapshot, plan.label, entry)


def _copy_all(src: Path, dst: Path, offset: int) -> None:
    with open(src, "rb") as i, open(dst, "r+b") as o:
        o.seek(offset)
        while chunk := i.read(MIB):
            o.write(chunk)
        o.flush()
        os.fsync(o.fileno())


async def _wait_for(node: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ZVOL_WAIT
    while not await asyncio.to_thread(node.exists):
        if loop.time() >= deadline:
            raise ImportError_(f"{node} did not appear within {ZVOL_WAIT:g}s of zfs create")
        await asyncio.sleep(0.1)


def _catalog_entry(plan: ImportPlan, catalog: Path | None) -> dict[str, object]:
    """The ``drivers.bhyve.images.<label>`` entry; written into ``catalog`` when given."""
    built = plan.built
    entry: dict[str, object] = {"dataset": plan.dataset, "snapshot": built.version}
    if catalog is None:
        entry["link"] = plan.link or "<physical link, e.g. igb0>"
        return entry
    try:
        data = yaml.safe_load(catalog.read_text()) if catalog.exists() else {}
    except (OSError, yaml.YAMLError) as err:
        raise ImportError_(f"cannot read catalog {catalog}: {err}") from None
    data = data or {}
    images = data.setdefault("drivers", {}).setdefault("bhyve", {}).setdefault("images", {})
    current = dict(images.get(plan.label) or {})
    if "link" not in current and plan.link is None:
        raise ImportError_(f"label {plan.label!r} is new in {catalog}: give --link (the VNICs' physical link)")
    current.update(entry)
    if plan.link is not None:
        current["link"] = plan.link
    images[plan.label] = current
    fd, tmp = tempfile.mkstemp(dir=catalog.parent, prefix=f".{catalog.name}.")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    try:
        load_driver_config(Path(tmp), env={})  # the file must still be a valid configuration
    except ConfigError as err:
        os.unlink(tmp)
        raise ImportError_(f"the updated catalog would be invalid: {err}") from None
    os.chmod(tmp, catalog.stat().st_mode & 0o777 if catalog.exists() else 0o644)
    os.replace(tmp, catalog)
    return current
