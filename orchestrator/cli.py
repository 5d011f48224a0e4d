"""``solstice-orchestrator``: one orchestrator node of a multi-host cluster."""

from __future__ import annotations

import click

from common.cli import run_cli


@click.group(
    epilog="""\b
Examples:
  solstice-orchestrator --help
"""
)
def cli() -> None:
    """Run an orchestrator node: consume job requests, boot a VM per job.

    Nodes share one RabbitMQ and one PostgreSQL; adding a host adds capacity.
    """


main = run_cli(cli)
