"""Every command of every Solstice program explains itself: a description and examples."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

PROGRAMS = {
    "solstice": "orchestrator.singlenode.cli",
    "solstice-orchestrator": "orchestrator.cli",
    "solstice-integration": "integration.cli",
    "solstice-runner": "runner.cli",
    "solstice-image": "images.cli",
    "ciadm": "ciadm.cli",
    "cidev": "cidev.cli",
    "solstice-report": "integration.external.report_cli",
}


REPO_ROOT = Path(__file__).resolve().parent.parent


def test_every_console_script_is_checked():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {program: f"{module}:main" for program, module in PROGRAMS.items()}


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
    assert "Examples:" in text, f"{' '.join(path)} --help shows no examples"
    # At least one example is a command line of this very program.
    examples = text.split("Examples:", 1)[1].splitlines()
    assert any(line.strip().startswith(path[0]) or "=" in line.split()[0] for line in examples if line.strip()), \
        f"{' '.join(path)} --help: no example runs {path[0]}"
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help text"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_installed_entry_point_prints_help(program):
    exe = Path(sys.executable).parent / program
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: {program}")
