"""``solstice-image``: stage progress, the closing summary, and one ERROR line on failure."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from images.build import BuiltImage
from images.cli import summary_rows
from images.progress import Progress

CLI = str(Path(sys.executable).parent / "solstice-image")


async def test_progress_reports_each_stage_in_a_log():
    out = io.StringIO()
    progress = Progress(2, out=out, tty=False)
    async with progress.stage("runner artefact"):
        pass
    async with progress.stage("disk image"):
        pass
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/2] runner artefact ..." and lines[1].startswith("[1/2] runner artefact: done in ")
    assert lines[2] == "[2/2] disk image ..." and lines[3].startswith("[2/2] disk image: done in ")
    assert [title for title, _ in progress.timings] == ["runner artefact", "disk image"]


async def test_progress_draws_a_bar_on_a_terminal():
    out = io.StringIO()
    progress = Progress(4, out=out, tty=True)
    async with progress.stage("base system"):
        pass
    assert "\r[######..................] 1/4 base system (0s)" in out.getvalue()


def test_the_summary_says_size_checksum_and_runner_version():
    built = BuiltImage("debian-12", "20261207-b3ad146e", "/srv/debian-12.raw", "ab" * 32, 2 << 30, 489 << 20,
                       "0.1.0", "uefi", "linux", "cd" * 32, 158.2)
    out = io.StringIO()
    Progress(1, out=out, tty=False).summary(summary_rows(built))
    text = out.getvalue()
    for expected in ("image     debian-12@20261207-b3ad146e", "size      2048 MiB disk, 489 MiB stored (sparse)",
                     f"sha256    {'ab' * 32}", "runner    0.1.0", "boot ROM  uefi", "took      158s"):
        assert expected in text


def test_a_failed_build_names_its_stage_in_one_error_line(tmp_path: Path):
    (tmp_path / "base.raw").write_bytes(b"not the image the recipe pins")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
name: pinned
os: linux
base:
  image: {{path: base.raw, sha256: {"0" * 64}}}
runner: {{python: "3.11"}}
disk_size: 1G
""")
    result = subprocess.run([CLI, "build", str(recipe), "--out", str(tmp_path / "out"), "--cache",
                             str(tmp_path / "cache")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "[1/5] runner artefact 0.1.0 for Python 3.11 ..."
    assert lines[-1].startswith("ERROR: fetch the base image and verify its SHA-256 (000000000000...): "
                                "checksum mismatch for ")
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "out").glob("*.raw"))


def test_a_bad_recipe_is_one_error_line(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nos: linux\n")
    result = subprocess.run([CLI, "check", str(recipe)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"ERROR: {recipe}:1:1: recipe lacks 'base', 'disk_size', 'runner'"
