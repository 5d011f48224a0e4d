"""``solstice``: the all-in-one single node."""

from __future__ import annotations

import click

from common.cli import run_cli


@click.group(
    epilog="""\b
Examples:
  solstice serve                       # SQLite state in ./data, local driver
  solstice serve --data-dir /var/lib/solstice --listen 0.0.0.0:8080
"""
)
def cli() -> None:
    """Solstice CI on one machine: webhooks, orchestrator and runners together.

    Single-node mode needs no configuration: state lives in SQLite, jobs go
    through an in-process queue, and the local driver runs every job.
    """


main = run_cli(cli)
