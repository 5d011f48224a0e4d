"""Every command of every Solstice program explains itself: a description and examples."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click
import pytest

PROGRAMS = {
    "solstice": "orchestrator.singlenode.cli",
    "solstice-orchestrator": "orchestrator.cli",
    "solstice-integration": "integration.cli",
    "solstice-runner": "runner.cli",
    "ciadm": "ciadm.cli",
    "cidev": "cidev.cli",
}


def _commands(name: str, cmd: click.Command, path: tuple[str, ...] = ()):
    yield (name, *path), cmd
    if isinstance(cmd, click.Group):
        for sub_name, sub in cmd.commands.items():
            yield from _commands(name, sub, (*path, sub_name))


def _all():
    for program, module in PROGRAMS.items():
        yield from _commands(program, importlib.import_module(module).cli)


@pytest.mark.parametrize(("path", "cmd"), list(_all()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_has_description_and_examples(path, cmd):
    ctx = click.Context(cmd, info_name=" ".join(path))
    text = cmd.get_help(ctx)
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no description"
    if isinstance(cmd, click.Group) and len(path) > 1:
        return  # sub-groups show their commands; their commands carry examples
    assert "Examples:" in text, f"{' '.join(path)} --help shows no examples"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_installed_entry_point_prints_help(program):
    exe = Path(sys.executable).parent / program
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: {program}")
