"""``ciadm``: operate a Solstice CI cluster."""

from __future__ import annotations

import click

from common.cli import run_cli


@click.group(
    epilog="""\b
Examples:
  ciadm --help
"""
)
def cli() -> None:
    """Operate Solstice CI: submit, list, follow, cancel and retry jobs; drain hosts.

    Talks to an orchestrator's AdminService ($SOLSTICE_ORCHESTRATOR).
    """


main = run_cli(cli)
