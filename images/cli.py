"""``solstice-image``: build golden images from recipes and import them into ZFS."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from common.cli import logging_options, run_cli
from images.build import BuiltImage, build
from images.importer import ImportPlan, import_image
from images.progress import Progress
from images.recipe import load_recipe

DEFAULT_CACHE = Path("/var/cache/solstice-image")
BUILD_STAGES = {"debootstrap": 6, "image": 5}


@click.group(
    epilog="""\b
Examples:
  solstice-image check images/recipes/debian-12.yaml
  solstice-image build images/recipes/debian-12.yaml --out /var/lib/solstice/images
  solstice-image import /var/lib/solstice/images/debian-12-20261201-1a2b3c4d.raw \\
      --dataset rpool/solstice/images/debian-12 --label debian-12 --catalog /etc/solstice/orchestrator.yaml
"""
)
def cli() -> None:
    """Build golden VM images with the Solstice runner inside, and import them into ZFS."""


@cli.command(epilog="""\b
Examples:
  solstice-image check images/recipes/omnios-r151054.yaml
""")
@click.argument("recipe", type=click.Path(path_type=Path, dir_okay=False))
def check(recipe: Path) -> None:
    """Validate RECIPE without building anything."""
    r = load_recipe(recipe)
    click.echo(f"{recipe}: ok ({r.name}, {r.os}, {type(r.base).__name__.lower()} base, "
               f"{len(r.packages)} packages, {len(r.files)} files)")


@cli.command("build", epilog="""\b
Examples:
  solstice-image build images/recipes/debian-12.yaml
  solstice-image build images/recipes/debian-12.yaml --out /srv/images --version 2026.12.1
""")
@click.argument("recipe", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True,
              help="Directory for <name>-<version>.raw and its .json description.")
@click.option("--cache", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_CACHE,
              show_default=True, help="Base systems, downloads and runner artefacts kept between builds.")
@click.option("--version", "version", default=None, help="Image version [default: <date>-<8 hex of its inputs>].")
@logging_options
def build_command(recipe: Path, out: Path, cache: Path, version: str | None) -> None:
    """Build the raw disk image RECIPE describes, with the runner inside."""
    r = load_recipe(recipe)
    progress = Progress(BUILD_STAGES["image" if type(r.base).__name__ == "BaseImage" else "debootstrap"])
    built = asyncio.run(build(r, out, cache, progress, version))
    progress.summary(summary_rows(built))


def summary_rows(built: BuiltImage) -> list[tuple[str, str]]:
    return [
        ("image", built.image_id),
        ("file", built.path),
        ("size", f"{built.size >> 20} MiB disk, {built.stored >> 20} MiB stored (sparse)"),
        ("sha256", built.sha256),
        ("runner", built.runner_version),
        ("boot ROM", built.bootrom),
        ("took", f"{built.seconds:.0f}s"),
    ]


@cli.command("import", epilog="""\b
Examples:
  solstice-image import debian-12-20261201-1a2b3c4d.raw --dataset rpool/solstice/images/debian-12
  solstice-image import debian-12-20261201-1a2b3c4d.raw --dataset rpool/solstice/images/debian-12 \\
      --label debian-12 --catalog /etc/solstice/orchestrator.yaml
""")
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--dataset", required=True, help="The image's zvol, e.g. rpool/solstice/images/debian-12.")
@click.option("--label", default=None, help="runs_on label of the catalog entry [default: the image name].")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Orchestrator YAML whose drivers.bhyve.images gets the entry (else it is printed).")
@click.option("--link", default=None, help="Physical link for the VNICs (needed when LABEL is new in the catalog).")
@click.option("--zfs", default="/usr/sbin/zfs", show_default=True, help="The zfs command.")
@click.option("--dev-root", type=click.Path(path_type=Path, file_okay=False), default=Path("/"), hidden=True,
              help="Where /dev/zvol is found (the fake toolchain keeps its own).")
@logging_options
def import_command(image: Path, dataset: str, label: str | None, catalog: Path | None, link: str | None,
                   zfs: str, dev_root: Path) -> None:
    """Create a zvol for IMAGE, write it, snapshot it and add it to the catalog."""
    built = BuiltImage.read(image.with_suffix(".json"))
    plan = ImportPlan(image=image, built=built, dataset=dataset, label=label or built.name, zfs=zfs,
                      dev_root=dev_root, link=link)
    result = asyncio.run(import_image(plan, catalog, echo=lambda line: click.echo(line, err=True)))
    sys.stdout.write(result.entry_text)
    if catalog is not None:
        click.echo(f"catalog {catalog}: images.{plan.label} now serves {result.snapshot}", err=True)


_run = run_cli(cli)


def main() -> None:
    # One log line per external command would drown the progress report:
    # warnings only, unless --log-level or $SOLSTICE_LOG_LEVEL says otherwise.
    os.environ.setdefault("SOLSTICE_LOG_LEVEL", "warning")
    _run()


if __name__ == "__main__":
    main()
