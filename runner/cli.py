"""``solstice-runner``: the agent inside each job VM."""

from __future__ import annotations

import click

from common.cli import run_cli


@click.group(
    epilog="""\b
Examples:
  solstice-runner --help
"""
)
def cli() -> None:
    """Run the one job this VM was booted for and stream its logs home."""


main = run_cli(cli)
