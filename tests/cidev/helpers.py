"""Shared pieces of the cidev tests: workflow texts, file writing, the CLI runner."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner, Result

from cidev.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"

# FILE:LINE:COL: [node: ]message, the one error format of every validation error.
ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)$")

VALID = """\
workflow name="demo" {
  job id="build" runs_on="illumos-stable" timeout="45m" {
    step name="Build" run="make"
    step name="Test" run="make test" timeout="20m"
  }
  job id="lint" runs_on="ubuntu-22.04" {
    step run="ruff check ."
  }
}
"""

# Three problems on known positions: an invalid id, an unknown property and
# a needs reference to a job that does not exist.
INVALID = """\
workflow {
  job id="Build" runs_on="illumos-stable" {
    step run="make" shell="bash"
  }
  job id="deploy" runs_on="ubuntu-22.04" {
    needs "bulid"
    step run="./deploy"
  }
}
"""
INVALID_ERRORS = [
    "2:7: job \"Build\": invalid job id \"Build\": use 1-63 characters of a-z, 0-9, '.', '_' and '-', "
    "starting with a letter or digit",
    '3:21: job "Build" > step #1: unknown property "shell" (allowed: name, run, timeout, workdir, continue_on_error)',
    '6:11: job "deploy" > needs: needs unknown job "bulid"',
]


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (creating parent directories) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project(root: Path, text: str) -> Path:
    """A project directory at ``root`` whose .solstice/workflow.kdl is ``text``."""
    write(root / ".solstice" / "workflow.kdl", text)
    return root


def invoke(*args: str) -> Result:
    """Run ``cidev ARGS`` in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)
