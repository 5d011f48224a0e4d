"""``solstice-orchestrator``: one orchestrator node of a multi-host cluster."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from common.cli import logging_options, run_cli
from orchestrator.secrets.cli import secret_key


@click.group(
    epilog="""\b
Examples:
  solstice-orchestrator serve --config /etc/solstice/orchestrator.yaml
  solstice-orchestrator --help
"""
)
def cli() -> None:
    """Run an orchestrator node: consume job requests, boot a VM per job.

    Nodes share one RabbitMQ and one PostgreSQL; adding a host adds capacity.
    """


@cli.command(
    epilog="""\b
Examples:
  solstice-orchestrator check --config /etc/solstice/orchestrator.yaml
  solstice-orchestrator check --config /etc/solstice/orchestrator.yaml --json
  SOLSTICE_DRIVERS_DRIVER=local solstice-orchestrator check
"""
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="SOLSTICE_CONFIG", help="The node's YAML file (its drivers, node and grpc sections).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as a JSON document.")
@logging_options
def check(config_path: Path | None, as_json: bool) -> None:
    """Read-only checks of this host: what would fail a job, and how to fix it.

    One table: a verdict per line (ok, warn, FAIL), what was found and what
    to do. bhyve: root, tools, brand, /dev/vmmctl, datasets, images, links,
    address pools, the route to the runner address, memory. Exits 1 if
    anything would fail a job.
    """
    from orchestrator.drivers.check import run_check

    text, status = asyncio.run(run_check(config_path, as_json))
    click.echo(text)
    if status:
        sys.exit(status)


@cli.command(
    epilog="""\b
Examples:
  solstice-orchestrator serve --config /etc/solstice/orchestrator.yaml
  SOLSTICE_NODE_HOST=illumos-b SOLSTICE_NODE_CAPACITY=8 solstice-orchestrator serve --config node.yaml
  SOLSTICE_STORE_URL=postgresql://solstice@db/solstice SOLSTICE_AMQP_URL=amqp://u:p@mq/ \\
    SOLSTICE_NODE_LABELS=illumos-stable solstice-orchestrator serve

\b
Every setting can be overridden by SOLSTICE_<SECTION>_<NAME> (see docs/orchestrator.md).
SIGTERM stops taking work, lets running jobs finish, requeues the rest and exits 0.
grpc.listen serves runners only. AdminService (ciadm) is on <data_dir>/admin.sock
(root and this user need no token) and, with admin.listen + admin.tls_cert/tls_key,
on TCP with TLS for remote operators, who need a token (`token create`).
"""
)
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="YAML settings file (see docs/orchestrator.md).")
@logging_options
def serve(config_path: Path | None) -> None:
    """Run this host's node: consume its labels' jobs, boot a VM per job, serve gRPC."""
    from common.config import load_config
    from orchestrator.node.serve import serve as serve_node
    from orchestrator.node.settings import NodeSettings

    settings = load_config(NodeSettings, config_path)
    raise SystemExit(asyncio.run(serve_node(settings)))


cli.add_command(secret_key)


@cli.group(epilog="""\b
Examples:
  solstice-orchestrator token create --config node.yaml --name alice --role operate --expires 90d
  solstice-orchestrator token list --config node.yaml
  solstice-orchestrator token revoke --config node.yaml alice
""")
def token() -> None:
    """Operator tokens for ciadm (and the dashboard): create, list, revoke.

    Roles: read (list, status, logs, hosts), operate (+ submit, cancel, retry),
    admin (+ drain, tokens). Written straight into the cluster's state store
    (store_url of the node's config); a token is printed once and only its
    hash is kept.
    """


def _token_commands() -> None:
    from orchestrator.operators.cli import add_token_commands

    def locate(config_path: Path | None) -> str:
        from common.config import load_config
        from orchestrator.node.settings import NodeSettings

        return load_config(NodeSettings, config_path).store_url

    where = click.option("--config", "where", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                         envvar="SOLSTICE_CONFIG", default=None,
                         help="The node's YAML file (its store_url holds the tokens).")
    add_token_commands(token, "solstice-orchestrator", where, locate)


_token_commands()
main = run_cli(cli)
