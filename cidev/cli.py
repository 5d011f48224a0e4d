"""``cidev``: work with .solstice/workflow.kdl on your laptop."""

from __future__ import annotations

import click

from common.cli import run_cli


@click.group(
    epilog="""\b
Examples:
  cidev validate
"""
)
def cli() -> None:
    """Validate, inspect and run Solstice workflows locally, no server needed."""


main = run_cli(cli)
