"""``solstice-integration``: the webhook receiver and forge reporter."""

from __future__ import annotations

import click

from common.cli import run_cli


@click.group(
    epilog="""\b
Examples:
  solstice-integration --help
"""
)
def cli() -> None:
    """Receive GitHub and Forgejo webhooks and report job results back.

    Runs next to the forge; publishes one job request per workflow job.
    """


main = run_cli(cli)
